// holdmon reference firmware for the Arduino Nano 33 BLE Sense Rev2 (BMI270 IMU).
//
// Core: "Arduino Mbed OS Nano Boards", FQBN arduino:mbed_nano:nano33ble. Libraries: ArduinoBLE,
// Arduino_BMI270_BMM150 (only to load the BMI270's configuration blob at start).
// Protocol: ../PROTOCOL.md. Build: ../README.md. Packets, commands and the sample grid live in
// the portable C library ../portable (holdmon_packet.h).
//
// Register facts used below (BMI270 datasheet BST-BMI270-DS000; see README.md, "unverified"):
//   0x00 CHIP_ID = 0x24; 0x03 STATUS (drdy_acc bit 7, drdy_gyr bit 6);
//   0x0C..0x11 accel x,y,z, 0x12..0x17 gyro x,y,z, int16 little-endian;
//   0x40 ACC_CONF (odr[3:0], bwp[6:4], filter_perf bit 7); 0x41 ACC_RANGE (0 2 g ... 3 16 g);
//   0x42 GYR_CONF (odr[3:0], bwp[5:4], filter_perf bit 7); 0x43 GYR_RANGE (0 2000 ... 3 250 dps);
//   0x7D PWR_CTRL (gyr_en bit 1, acc_en bit 2). ODR codes: 8 = 100, 9 = 200, 10 = 400, 11 = 800 Hz.
// One count is full scale / 32768 for both sensors, which is the protocol's unit already.

#include <ArduinoBLE.h>
#include <Arduino_BMI270_BMM150.h>
#include <Wire.h>
#include <utility/ATT.h>

#include <holdmon_packet.h>

#define HM_FIRMWARE_VERSION "1.0.0"
#define IMU_ADDR 0x68
#define IMU_WIRE Wire1  // internal sensor bus

BLEService hmService("ff190001-dfb9-4379-ac00-2d08c754cb7c");
BLECharacteristic dataChr("ff190002-dfb9-4379-ac00-2d08c754cb7c", BLENotify, HM_MAX_PACKET, false);
BLECharacteristic controlChr("ff190003-dfb9-4379-ac00-2d08c754cb7c",
                             BLEWrite | BLEWriteWithoutResponse | BLENotify, HM_MAX_REPLY, false);
BLEService batteryService("180F");
BLEUnsignedCharCharacteristic batteryLevel("2A19", BLERead | BLENotify);
BLEService disService("180A");
BLEStringCharacteristic manufacturerChr("2A29", BLERead, 16);
BLEStringCharacteristic modelChr("2A24", BLERead, 24);
BLEStringCharacteristic firmwareChr("2A26", BLERead, 8);

static const uint8_t ODR_CODE[HM_RATE_CODES] = {8, 9, 10, 11};  // 100, 200, 400, 800 Hz
static const uint8_t GYR_RANGE[HM_GYRO_CODES] = {3, 2, 1, 0};   // 250, 500, 1000, 2000 dps

static hm_stream_t stream;
static hm_board_t board;
static BLEDevice central;
static bool imuOk = false;
static uint32_t identifyUntilMs = 0;
static uint16_t attMtu = 23;
static bool commandPending = false;
static uint8_t commandBytes[HM_MAX_REPLY];
static int commandLen = 0;

// ------------------------------------------------------------------------------ IMU

static bool imuWrite(uint8_t reg, uint8_t value) {
  IMU_WIRE.beginTransmission(IMU_ADDR);
  IMU_WIRE.write(reg);
  IMU_WIRE.write(value);
  return IMU_WIRE.endTransmission() == 0;
}

static bool imuRead(uint8_t reg, uint8_t *out, uint8_t len) {
  IMU_WIRE.beginTransmission(IMU_ADDR);
  IMU_WIRE.write(reg);
  if (IMU_WIRE.endTransmission(false) != 0) return false;
  if (IMU_WIRE.requestFrom((uint8_t)IMU_ADDR, len) != len) return false;
  for (uint8_t i = 0; i < len; i++) out[i] = IMU_WIRE.read();
  return true;
}

static bool imuConfigure(void *ctx, uint8_t rate, uint8_t acc, uint8_t gyro) {
  (void)ctx;
  uint8_t id = 0;
  imuOk = imuRead(0x00, &id, 1) && id == 0x24 &&
          imuWrite(0x40, (uint8_t)(0xA0 | ODR_CODE[rate])) && imuWrite(0x41, acc) &&
          imuWrite(0x42, (uint8_t)(0xA0 | ODR_CODE[rate])) && imuWrite(0x43, GYR_RANGE[gyro]) &&
          imuWrite(0x7D, 0x06);  // accel + gyro on
  return imuOk;
}

static void imuSleep(void *ctx) {
  (void)ctx;
  imuWrite(0x7D, 0x00);
}

static bool imuPoll(hm_sample_t *x) {
  uint8_t status = 0, raw[12];
  if (!imuRead(0x03, &status, 1) || (status & 0xC0) != 0xC0) return false;
  if (!imuRead(0x0C, raw, sizeof raw)) return false;
  for (int k = 0; k < 6; k++) x->v[k] = (int16_t)(raw[2 * k] | (raw[2 * k + 1] << 8));
  return true;
}

// ------------------------------------------------------------------------------ board hooks

static void identify(void *ctx, uint8_t seconds) {
  (void)ctx;
  identifyUntilMs = seconds ? millis() + 1000UL * seconds : 0;
  if (!seconds) digitalWrite(LED_BUILTIN, LOW);
}

static void boardStatus(void *ctx, hm_status_t *st) {
  (void)ctx;
  st->board_id = HM_BOARD_NANO33_SENSE_REV2;
  st->battery_pct = HM_BATTERY_UNKNOWN;  // no battery gauge on this board
  st->att_mtu = attMtu;
  st->conn_interval_1250us = 0;  // ArduinoBLE does not report it
  st->state = (uint8_t)((imuOk ? HM_STATE_IMU_OK : 0) | (identifyUntilMs ? HM_STATE_IDENTIFYING : 0));
}

static bool sendData(void *ctx, const uint8_t *packet, size_t len) {
  (void)ctx;
  return central.connected() && dataChr.writeValue(packet, (int)len) != 0;
}

// The negotiated ATT_MTU of the central. ArduinoBLE keeps it per connection handle but does
// not expose the handle of a BLEDevice, so look it up by the central's address.
static uint16_t centralMtu() {
  uint8_t addr[6];
  String text = central.address();  // "aa:bb:cc:dd:ee:ff", most significant byte first
  for (int i = 0; i < 6; i++) addr[5 - i] = (uint8_t)strtoul(text.substring(3 * i, 3 * i + 2).c_str(), nullptr, 16);
  for (uint8_t type = 0; type < 2; type++) {
    uint16_t handle = ATT.connectionHandle(type, addr);
    if (handle != 0xffff) return ATT.mtu(handle);
  }
  return 23;
}

// ------------------------------------------------------------------------------ BLE callbacks

static void onControlWrite(BLEDevice dev, BLECharacteristic chr) {
  (void)dev;
  if (commandPending) return;
  commandLen = chr.valueLength();
  memcpy(commandBytes, chr.value(), (size_t)(commandLen < (int)sizeof commandBytes ? commandLen : (int)sizeof commandBytes));
  commandPending = true;
}

static void onConnect(BLEDevice dev) {
  central = dev;
  attMtu = 23;
}

static void onDisconnect(BLEDevice dev) {
  (void)dev;
  hm_stream_stop(&stream);
  imuSleep(nullptr);
  attMtu = 23;
  hm_stream_set_mtu(&stream, attMtu);
}

// ------------------------------------------------------------------------------ setup / loop

void setup() {
  pinMode(LED_BUILTIN, OUTPUT);
  imuOk = IMU.begin();  // resets the BMI270 and loads its configuration blob
  IMU_WIRE.setClock(400000);
  imuSleep(nullptr);

  hm_stream_init(&stream, sendData, nullptr);
  board.ctx = nullptr;
  board.imu_configure = imuConfigure;
  board.imu_sleep = imuSleep;
  board.identify = identify;
  board.board_status = boardStatus;

  if (!BLE.begin()) {
    while (true) {  // no radio: blink fast forever
      digitalWrite(LED_BUILTIN, (millis() / 100) % 2);
    }
  }
  String addr = BLE.address();  // "aa:bb:cc:dd:ee:ff"
  addr.toUpperCase();
  String name = "holdmon-" + addr.substring(12, 14) + addr.substring(15, 17);
  BLE.setLocalName(name.c_str());
  BLE.setDeviceName(name.c_str());
  BLE.setConnectionInterval(6, 12);  // 7.5-15 ms, requested after the central connects
  BLE.setEventHandler(BLEConnected, onConnect);
  BLE.setEventHandler(BLEDisconnected, onDisconnect);

  hmService.addCharacteristic(dataChr);
  hmService.addCharacteristic(controlChr);
  controlChr.setEventHandler(BLEWritten, onControlWrite);
  BLE.addService(hmService);
  batteryService.addCharacteristic(batteryLevel);
  BLE.addService(batteryService);
  batteryLevel.writeValue(100);
  disService.addCharacteristic(manufacturerChr);
  disService.addCharacteristic(modelChr);
  disService.addCharacteristic(firmwareChr);
  BLE.addService(disService);
  manufacturerChr.writeValue("holdmon");
  modelChr.writeValue("Nano 33 BLE Sense Rev2");
  firmwareChr.writeValue(HM_FIRMWARE_VERSION);

  BLE.setAdvertisedService(hmService);
  BLE.setAdvertisingInterval(32);  // 20 ms (0.625 ms units)
  BLE.advertise();
}

void loop() {
  hm_sample_t x;
  uint32_t nowMs = millis();
  BLE.poll();

  if (stream.running && imuPoll(&x)) {
    hm_stream_push(&stream, micros(), &x);
  }

  if (commandPending) {
    uint8_t reply[HM_MAX_REPLY];
    size_t len = hm_device_handle_write(&stream, &board, commandBytes, (size_t)commandLen, reply, sizeof reply);
    controlChr.writeValue(reply, (int)len);
    commandPending = false;
  }

  static uint32_t lastMtuCheckMs = 0;
  if (central.connected() && nowMs - lastMtuCheckMs >= 250) {
    lastMtuCheckMs = nowMs;
    uint16_t mtu = centralMtu();
    if (mtu != attMtu) {
      attMtu = mtu;
      hm_stream_set_mtu(&stream, mtu);
    }
  }

  if (identifyUntilMs) {
    if ((int32_t)(nowMs - identifyUntilMs) >= 0) {
      identify(nullptr, 0);
    } else {
      digitalWrite(LED_BUILTIN, (nowMs / 125) % 2 ? HIGH : LOW);
    }
  }
}
