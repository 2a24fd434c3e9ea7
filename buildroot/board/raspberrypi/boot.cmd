# U-Boot boot script of the Seed gateway on Raspberry Pi: the A/B boot
# selector (docs/ota.md). Buildroot compiles it to boot.scr on the boot
# partition (BR2_PACKAGE_HOST_UBOOT_TOOLS_BOOT_SCRIPT_SOURCE).
#
# The state is U-Boot's environment (raw on the SD card, two copies:
# uboot.fragment, fw_env.config), shared with Linux's
# /usr/libexec/seed/bootstate, which is RAUC's backend and follows the
# same rules:
#   BOOT_ORDER   "A B" or "B A"
#   BOOT_A_LEFT  tries left for slot A (3: good, 0: bad)
#   BOOT_B_LEFT  the same for B
#   BOOT_TRIAL   the slot installed and not yet marked good, or unset
# Rules: boot the first slot of the order with tries left; count down only
# a slot on trial (power cuts never flip a confirmed system); no slot with
# tries left: the first of the order gets 3 again and boots, trial over.
# Missing state (a fresh card, or an environment with a bad CRC that U-Boot
# replaced by its default): order "A B", A 3 tries, B 0.
#
# Slot A is partition 2, B partition 3; each holds its kernel as
# /boot/Image. The device tree is the one the firmware prepared.

test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 0

setenv slot
for s in ${BOOT_ORDER}; do
	if test -z "${slot}"; then
		if test "x${s}" = "xA" && test ${BOOT_A_LEFT} -gt 0; then
			setenv slot A
		fi
		if test "x${s}" = "xB" && test ${BOOT_B_LEFT} -gt 0; then
			setenv slot B
		fi
	fi
done

if test -z "${slot}"; then
	for s in ${BOOT_ORDER}; do
		test -n "${slot}" || setenv slot ${s}
	done
	echo "seed-boot: no slot has tries left: ${slot} gets 3 again"
	if test "x${slot}" = "xA"; then
		setenv BOOT_A_LEFT 3
	else
		setenv BOOT_B_LEFT 3
	fi
	setenv BOOT_TRIAL
	saveenv
elif test "x${BOOT_TRIAL}" = "x${slot}"; then
	# setexpr prints hexadecimal: the same digits for 0-3.
	if test "x${slot}" = "xA"; then
		setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
	else
		setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
	fi
	echo "seed-boot: ${slot} is on trial"
	saveenv
fi

if test "x${slot}" = "xA"; then
	setenv rootpart 2
else
	setenv rootpart 3
fi
echo "seed-boot: slot ${slot} (partition ${rootpart})"

# The firmware's command line (cmdline.txt), then the slot's root; the
# kernel takes the last root=.
fdt addr ${fdt_addr}
fdt get value firmware_bootargs /chosen bootargs
setenv bootargs "${firmware_bootargs} root=/dev/mmcblk0p${rootpart} rauc.slot=${slot}"

ext4load ${devtype} ${devnum}:${rootpart} ${kernel_addr_r} /boot/Image
booti ${kernel_addr_r} - ${fdt_addr}

# Only reached when the slot's kernel could not be loaded or started: mark
# it bad so that the next boot takes the other slot, and reset.
echo "seed-boot: slot ${slot} does not boot: marking it bad"
if test "x${slot}" = "xA"; then
	setenv BOOT_A_LEFT 0
else
	setenv BOOT_B_LEFT 0
fi
saveenv
reset
