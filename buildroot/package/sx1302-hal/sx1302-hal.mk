################################################################################
#
# sx1302-hal
#
################################################################################

# Fetched with git at the release tag so the archive, and the hash that pins
# it, is generated reproducibly by Buildroot itself.
SX1302_HAL_VERSION = V2.1.0
SX1302_HAL_SITE = https://github.com/Lora-net/sx1302_hal.git
SX1302_HAL_SITE_METHOD = git
SX1302_HAL_LICENSE = BSD-3-Clause (HAL), MIT (parson)
SX1302_HAL_LICENSE_FILES = LICENSE.TXT

# The upstream makefiles hard-code $(CROSS_COMPILE)gcc and their own CFLAGS;
# only the library and the forwarder are built (the test programs and the
# utilities are left out).
SX1302_HAL_MAKE_OPTS = CROSS_COMPILE="$(TARGET_CROSS)" ARCH="$(KERNEL_ARCH)"

define SX1302_HAL_BUILD_CMDS
	$(TARGET_MAKE_ENV) $(MAKE) -C $(@D)/libtools $(SX1302_HAL_MAKE_OPTS) all
	$(TARGET_MAKE_ENV) $(MAKE) -C $(@D)/libloragw $(SX1302_HAL_MAKE_OPTS) libloragw.a
	$(TARGET_MAKE_ENV) $(MAKE) -C $(@D)/packet_forwarder $(SX1302_HAL_MAKE_OPTS) lora_pkt_fwd
endef

define SX1302_HAL_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/packet_forwarder/lora_pkt_fwd \
		$(TARGET_DIR)/usr/bin/lora_pkt_fwd
	$(INSTALL) -D -m 0755 $(SX1302_HAL_PKGDIR)/reset_lgw.sh \
		$(TARGET_DIR)/usr/libexec/lora_pkt_fwd/reset_lgw.sh
	$(INSTALL) -D -m 0755 $(SX1302_HAL_PKGDIR)/run-forwarder \
		$(TARGET_DIR)/usr/libexec/lora_pkt_fwd/run-forwarder
	$(INSTALL) -D -m 0644 $(SX1302_HAL_PKGDIR)/global_conf.json \
		$(TARGET_DIR)/etc/lora_pkt_fwd/global_conf.json
	$(INSTALL) -D -m 0644 $(SX1302_HAL_PKGDIR)/lora_pkt_fwd.default \
		$(TARGET_DIR)/etc/default/lora_pkt_fwd
endef

define SX1302_HAL_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0755 $(SX1302_HAL_PKGDIR)/S45lora_pkt_fwd \
		$(TARGET_DIR)/etc/init.d/S45lora_pkt_fwd
endef

$(eval $(generic-package))
