#!/bin/sh
#
# Resets the SX1302 concentrator and powers it up (start) or down (stop).
# lora_pkt_fwd runs "./reset_lgw.sh start" from its working directory before
# it opens the SPI bus, and "./reset_lgw.sh stop" when it exits.
#
# The pins come from /etc/default/lora_pkt_fwd. Kernels since 6.6 no longer
# give the Raspberry Pi's GPIO controller base 0 in the sysfs GPIO space, so
# the base is looked up from the controller's label instead of assumed.

SX1302_RESET_PIN=23
SX1302_POWER_EN_PIN=18
SX1261_RESET_PIN=22
# shellcheck source=/dev/null
[ -r /etc/default/lora_pkt_fwd ] && . /etc/default/lora_pkt_fwd

gpio_base() {
	for chip in /sys/class/gpio/gpiochip*; do
		case "$(cat "${chip}/label" 2>/dev/null)" in
		pinctrl-bcm2711|pinctrl-bcm2835)
			cat "${chip}/base"
			return 0
			;;
		esac
	done
	echo "reset_lgw.sh: no Raspberry Pi GPIO controller in /sys/class/gpio" >&2
	return 1
}

# set_pin PIN VALUE: export the line if needed, drive it as an output.
set_pin() {
	line=$((base + $1))
	dir="/sys/class/gpio/gpio${line}"
	[ -d "${dir}" ] || echo "${line}" >/sys/class/gpio/export || return 1
	echo out >"${dir}/direction" || return 1
	echo "$2" >"${dir}/value" || return 1
	sleep 0.1
}

release_pin() {
	line=$((base + $1))
	[ -d "/sys/class/gpio/gpio${line}" ] && echo "${line}" >/sys/class/gpio/unexport
	return 0
}

base="$(gpio_base)" || exit 1

case "$1" in
start)
	set_pin "${SX1302_POWER_EN_PIN}" 1 &&
		set_pin "${SX1302_RESET_PIN}" 1 &&
		set_pin "${SX1302_RESET_PIN}" 0 &&
		set_pin "${SX1261_RESET_PIN}" 0 &&
		set_pin "${SX1261_RESET_PIN}" 1
	;;
stop)
	set_pin "${SX1302_RESET_PIN}" 1
	set_pin "${SX1302_POWER_EN_PIN}" 0
	for pin in "${SX1302_RESET_PIN}" "${SX1302_POWER_EN_PIN}" "${SX1261_RESET_PIN}"; do
		release_pin "${pin}"
	done
	;;
*)
	echo "Usage: $0 {start|stop}" >&2
	exit 2
	;;
esac
