#!/bin/sh
#
# Boots the Seed gateway image built by seed_qemu_x86_64_defconfig, from
# the directory it is in (output/images). The status page is forwarded to
# http://127.0.0.1:8080/; the RNode serial port is a virtio-serial console
# port named rnode0 (a tty in the guest) whose host side is the Unix socket
# ./rnode0.sock.
#
# Usage: start-qemu.sh [extra qemu arguments]

set -eu
cd "$(dirname "$0")"

accel=tcg
if [ -w /dev/kvm ] && grep -qw -e vmx -e svm /proc/cpuinfo; then
	accel=kvm
fi

exec qemu-system-x86_64 \
	-M pc -accel "${accel}" -m 512 -smp 2 \
	-nographic -serial mon:stdio \
	-kernel bzImage \
	-append "root=/dev/vda1 ro rootwait seed.data=/dev/vdb console=ttyS0" \
	-drive file=disk.img,if=virtio,format=raw \
	-drive file=data.img,if=virtio,format=raw \
	-netdev user,id=net0,hostfwd=tcp:127.0.0.1:8080-:8080 \
	-device virtio-net-pci,netdev=net0 \
	-device virtio-serial-pci \
	-chardev socket,id=rnode0,path=rnode0.sock,server=on,wait=off \
	-device virtconsole,chardev=rnode0,name=rnode0 \
	-device i6300esb -action watchdog=reset \
	"$@"
