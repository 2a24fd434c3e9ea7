#!/usr/bin/env bash
#
# Boots the test image of image/build.sh in QEMU (software emulation unless
# the CPU offers real KVM). The QEMU process replaces this script, so its pid
# is this script's: kill -9 it to cut the power.
#
# Usage: image/boot.sh [options] [-- extra qemu arguments]
#
#   --arch ARCH          x86_64 (qemu-system-x86_64 -M pc) or aarch64
#                        (qemu-system-aarch64 -M virt -cpu cortex-a57); default
#                        $SEED_IMAGE_ARCH or x86_64. Build the image first with
#                        image/build.sh --arch ARCH
#   --out DIR            image directory (default $SEED_IMAGE_OUT, or
#                        image/out for x86_64 and image/out-aarch64 for aarch64)
#   --data FILE          data disk (default OUT/data.img); created blank
#                        (256 MiB, formatted by the guest) when absent
#   --http-port PORT     host port forwarded to the status page, guest port
#                        8080 (default 8080; 0 for none)
#   --forward HOST:GUEST another TCP port forward, 127.0.0.1:HOST to the
#                        guest's GUEST (repeatable)
#   --rnode-socket PATH  the virtio-serial console port named rnode0, a tty
#                        in the guest (/dev/virtio-ports/rnode0 -> hvc0) and
#                        the gateway's RNode link; QEMU listens on this Unix
#                        socket, connect the simulated RNode to it
#   --rnode-serial PATH  the same port wired to a serial device on the host
#                        instead: a USB RNode, or the pseudo-terminal of an
#                        emulated one (seed-gateway simulate --serial PATH;
#                        start it first, QEMU opens PATH when it starts)
#   --debug-socket PATH  the virtio-serial port named debug0, where the test
#                        image runs a root shell (no prompt, no echo)
#   --console-log FILE   guest console to FILE instead of this terminal
#   --memory MB          guest RAM (default 512, a Pi Zero 2 W)
#   --append ARGS        more kernel command line
#   --disk FILE          system disk (default OUT/disk.img)
#   --boot-partition FILE  a FAT disk standing in for the SD card's boot
#                        partition (/dev/vdc, seed.boot=/dev/vdc), where a
#                        technician leaves settings (seed-admin-password.txt)
#   --writable-disk      write to the system disk (default: QEMU snapshot,
#                        changes are dropped). An A/B update writes to it
#                        (the other slot, the boot state): give --disk a
#                        copy of OUT/disk.img then
#
# Without --console-log the console is this terminal: Ctrl-A X quits,
# Ctrl-A C switches to the QEMU monitor.

set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
arch="${SEED_IMAGE_ARCH:-x86_64}"
out="${SEED_IMAGE_OUT:-}"
data=
disk=
http_port=8080
forwards=()
rnode_socket=
rnode_serial=
debug_socket=
console_log=
memory=512
append=
boot_partition=
snapshot=on
extra=()

while [ $# -gt 0 ]; do
	case "$1" in
	--arch) arch="$2"; shift 2 ;;
	--out) out="$2"; shift 2 ;;
	--data) data="$2"; shift 2 ;;
	--disk) disk="$2"; shift 2 ;;
	--http-port) http_port="$2"; shift 2 ;;
	--forward) forwards+=("$2"); shift 2 ;;
	--rnode-socket) rnode_socket="$2"; shift 2 ;;
	--rnode-serial) rnode_serial="$2"; shift 2 ;;
	--debug-socket) debug_socket="$2"; shift 2 ;;
	--console-log) console_log="$2"; shift 2 ;;
	--memory) memory="$2"; shift 2 ;;
	--append) append="$2"; shift 2 ;;
	--boot-partition) boot_partition="$2"; shift 2 ;;
	--writable-disk) snapshot=off; shift ;;
	--) shift; extra=("$@"); break ;;
	-h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "boot.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
	esac
done

# The machine: its QEMU, the board's serial console, and where the image is.
case "${arch}" in
x86_64)
	qemu=qemu-system-x86_64 machine=(-M pc) console=ttyS0 default_out="${here}/out" ;;
aarch64 | arm64)
	# -M virt with a Cortex-A57 (the Pi 4's A72 is the same ARMv8-A
	# generation); the kernel is loaded directly, no firmware. PCI virtio
	# devices and the i6300esb watchdog work on its PCIe bus as on a PC.
	qemu=qemu-system-aarch64 machine=(-M virt -cpu cortex-a57) console=ttyAMA0 default_out="${here}/out-aarch64" ;;
*) echo "boot.sh: unknown architecture '${arch}' (x86_64 or aarch64)" >&2; exit 2 ;;
esac
out="${out:-${default_out}}"

for f in vmlinuz initramfs.cpio.gz disk.img; do
	[ -e "${out}/${f}" ] || { echo "boot.sh: no ${out}/${f}; run image/build.sh --arch ${arch} first" >&2; exit 1; }
done
data="${data:-${out}/data.img}"
disk="${disk:-${out}/disk.img}"
[ -e "${disk}" ] || { echo "boot.sh: no system disk ${disk}" >&2; exit 1; }
[ -e "${data}" ] || truncate -s 256M "${data}"

# /dev/kvm may be a paravirtual KVM that hangs a stock kernel; only use it
# when the CPU really has virtualisation extensions.
accel=tcg
cpus=1
if [ "${arch}" = "$(uname -m)" ] && [ -w /dev/kvm ] && grep -qw -e vmx -e svm /proc/cpuinfo; then
	accel=kvm
	cpus=2
fi
# Emulated (TCG) guests get one CPU: on a busy 2-core host a second vCPU
# thread can go unscheduled for tens of seconds while the first spins
# waiting for it (a CI run saw RCU stalls and a 74 s soft lockup in dnsmasq,
# and the Wi-Fi test timed out). One vCPU never waits for another.

# The i6300esb is the hardware watchdog S95seed-watchdog feeds: when it
# expires, the guest resets, as a Raspberry Pi's would.
netdev="user,id=net0"
[ "${http_port}" != 0 ] && netdev+=",hostfwd=tcp:127.0.0.1:${http_port}-:8080"
for forward in "${forwards[@]}"; do
	netdev+=",hostfwd=tcp:127.0.0.1:${forward%%:*}-:${forward#*:}"
done

[ -n "${boot_partition}" ] && append="seed.boot=/dev/vdc ${append}"

# shellcheck disable=SC2054 # commas belong to QEMU's option syntax
args=(
	"${machine[@]}" -accel "${accel}" -m "${memory}" -smp "${cpus}"
	-kernel "${out}/vmlinuz" -initrd "${out}/initramfs.cpio.gz"
	-append "console=${console} root=/dev/vda1 ro seed.data=/dev/vdb quiet panic=10 ${append}"
	-drive "file=${disk},if=virtio,format=raw,snapshot=${snapshot}"
	-drive "file=${data},if=virtio,format=raw"
	-netdev "${netdev}" -device virtio-net-pci,netdev=net0
	-device virtio-serial-pci
	-device i6300esb -action watchdog=reset
)
if [ -n "${boot_partition}" ]; then
	# The third virtio disk, after the system and data disks: /dev/vdc.
	args+=(-drive "file=${boot_partition},if=virtio,format=raw")
fi
# shellcheck disable=SC2054
if [ -n "${rnode_socket}" ]; then
	args+=(-chardev "socket,id=rnode0,path=${rnode_socket},server=on,wait=off"
		-device virtconsole,chardev=rnode0,name=rnode0)
elif [ -n "${rnode_serial}" ]; then
	args+=(-chardev "serial,id=rnode0,path=${rnode_serial}"
		-device virtconsole,chardev=rnode0,name=rnode0)
fi
# shellcheck disable=SC2054
if [ -n "${debug_socket}" ]; then
	args+=(-chardev "socket,id=debug0,path=${debug_socket},server=on,wait=off"
		-device virtserialport,chardev=debug0,name=debug0)
fi
if [ -n "${console_log}" ]; then
	args+=(-display none -monitor none -serial "file:${console_log}")
else
	args+=(-nographic -serial mon:stdio)
fi

exec "${qemu}" "${args[@]}" "${extra[@]}"
