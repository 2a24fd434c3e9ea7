################################################################################
#
# seed-gateway
#
################################################################################

# The version and the tarball come from make-tarball.sh, which packs the
# workspace at a git commit together with its vendored crates (VENDOR/ and
# .cargo/config.toml), so the build runs offline and the .hash file pins
# every byte of it. Buildroot's cargo download post-process sees VENDOR/ and
# leaves the tarball untouched.
SEED_GATEWAY_VERSION = 0.1.0
# Named as make-tarball.sh names it. Without this line the cargo
# infrastructure looks for seed-gateway-$(VERSION)-cargoN.tar.gz (N changes
# between Buildroot releases) and no build finds the tarball. check-package
# takes this for the generic default, which it is not for cargo packages.
# check-package disable RemoveDefaultPackageSourceVariable
SEED_GATEWAY_SOURCE = seed-gateway-$(SEED_GATEWAY_VERSION).tar.gz
SEED_GATEWAY_SITE = file://$(BR2_EXTERNAL_SEED_PATH)/../dist
SEED_GATEWAY_SUBDIR = gateway
# Buildroot's cargo infrastructure sets the release profile's LTO, codegen
# units and opt-level from its own options (no LTO, 16 units, BR2_OPTIMIZE),
# which is not the binary we measure and size (docs/benchmarks.md). These
# restore [profile.release] of the workspace Cargo.toml (a test checks they
# agree); its per-crate opt-levels and panic strategy are not overridden.
SEED_GATEWAY_CARGO_ENV = \
	CARGO_PROFILE_RELEASE_LTO=fat \
	CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
	CARGO_PROFILE_RELEASE_OPT_LEVEL=s
SEED_GATEWAY_LICENSE = Apache-2.0

define SEED_GATEWAY_INSTALL_APPLIANCE_FILES
	$(INSTALL) -D -m 0755 $(SEED_GATEWAY_PKGDIR)/supervise \
		$(TARGET_DIR)/usr/libexec/seed-gateway/supervise
	$(INSTALL) -D -m 0644 $(SEED_GATEWAY_PKGDIR)/config.toml \
		$(TARGET_DIR)/etc/seed-gateway/config.toml
endef
SEED_GATEWAY_POST_INSTALL_TARGET_HOOKS += SEED_GATEWAY_INSTALL_APPLIANCE_FILES

define SEED_GATEWAY_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0755 $(SEED_GATEWAY_PKGDIR)/S50seed-gateway \
		$(TARGET_DIR)/etc/init.d/S50seed-gateway
endef

$(eval $(cargo-package))
