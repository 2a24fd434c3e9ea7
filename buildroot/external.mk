include $(sort $(wildcard $(BR2_EXTERNAL_SEED_PATH)/package/*/*.mk))
