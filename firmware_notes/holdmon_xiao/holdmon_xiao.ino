// holdmon reference firmware for the Seeed XIAO nRF52840 Sense (LSM6DS3TR-C IMU).
//
// Core: "Seeed nRF52 Boards" (Adafruit nRF52 based, Bluefruit API), FQBN
// Seeeduino:nrf52:xiaonRF52840Sense. Protocol: ../PROTOCOL.md. Build: ../README.md.
// This file only talks to the hardware; packets, commands and the sample grid live in the
// portable C library ../portable (holdmon_packet.h), which the tests compile on the host.
//
// Register facts used below (LSM6DS3TR-C datasheet; see README.md, "unverified"):
//   0x0F WHO_AM_I = 0x6A; 0x10 CTRL1_XL (ODR[7:4], FS[3:2]: 00 2 g, 10 4 g, 11 8 g, 01 16 g);
//   0x11 CTRL2_G (ODR[7:4], FS[3:2]: 00 250, 01 500, 10 1000, 11 2000 dps);
//   0x12 CTRL3_C (BDU bit 6, IF_INC bit 2); 0x1E STATUS_REG (XLDA bit 0, GDA bit 1);
//   0x22..0x27 gyro x,y,z, 0x28..0x2D accel x,y,z, int16 little-endian.
//   ODR codes: 4 = 104 Hz, 5 = 208 Hz, 6 = 416 Hz, 7 = 833 Hz, 0 = power-down.

#include <Wire.h>
#include <bluefruit.h>

#include <holdmon_packet.h>

#define HM_FIRMWARE_VERSION "1.0.0"
#define IMU_ADDR 0x6A
#define IMU_WIRE Wire1  // the IMU sits on the board's internal I2C bus

// UUIDs of PROTOCOL.md section 1, least significant byte first (Bluefruit's order).
static const uint8_t UUID_SERVICE[16] = {0x7c, 0xcb, 0x54, 0xc7, 0x08, 0x2d, 0x00, 0xac,
                                         0x79, 0x43, 0xb9, 0xdf, 0x01, 0x00, 0x19, 0xff};
static const uint8_t UUID_DATA[16] = {0x7c, 0xcb, 0x54, 0xc7, 0x08, 0x2d, 0x00, 0xac,
                                      0x79, 0x43, 0xb9, 0xdf, 0x02, 0x00, 0x19, 0xff};
static const uint8_t UUID_CONTROL[16] = {0x7c, 0xcb, 0x54, 0xc7, 0x08, 0x2d, 0x00, 0xac,
                                         0x79, 0x43, 0xb9, 0xdf, 0x03, 0x00, 0x19, 0xff};

BLEService hmService(UUID_SERVICE);
BLECharacteristic dataChr(UUID_DATA);
BLECharacteristic controlChr(UUID_CONTROL);
BLEDis bledis;
BLEBas blebas;

// IMU output data rate per protocol rate code: at least twice the output rate.
static const uint8_t ODR_CODE[HM_RATE_CODES] = {4, 5, 6, 7};   // 104, 208, 416, 833 Hz
static const uint8_t ACC_FS_BITS[HM_ACC_CODES] = {0, 2, 3, 1};  // 2, 4, 8, 16 g
static const uint8_t GYR_FS_BITS[HM_GYRO_CODES] = {0, 1, 2, 3}; // 250 ... 2000 dps

static hm_stream_t stream;
static hm_board_t board;
static uint16_t connHandle = BLE_CONN_HANDLE_INVALID;
static uint32_t connectedAtMs = 0;
static bool connParamsRequested = false;
static bool imuOk = false;
static uint32_t identifyUntilMs = 0;
static uint8_t batteryPct = HM_BATTERY_UNKNOWN;

// A control write or a disconnect is noted here by the BLE task and handled in loop(), so the
// stream is only ever touched from one context.
static volatile bool commandPending = false;
static volatile bool linkLost = false;
static uint8_t commandBytes[HM_MAX_REPLY];
static uint16_t commandLen = 0;

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
  uint8_t who = 0;
  imuOk = imuRead(0x0F, &who, 1) && who == 0x6A &&
          imuWrite(0x12, 0x44) &&  // BDU, register auto-increment
          imuWrite(0x10, (uint8_t)((ODR_CODE[rate] << 4) | (ACC_FS_BITS[acc] << 2))) &&
          imuWrite(0x11, (uint8_t)((ODR_CODE[rate] << 4) | (GYR_FS_BITS[gyro] << 2)));
  return imuOk;
}

static void imuSleep(void *ctx) {
  (void)ctx;
  imuWrite(0x10, 0x00);
  imuWrite(0x11, 0x00);
}

// Reads one sample if both data-ready bits are set; converts to protocol counts.
static bool imuPoll(hm_sample_t *x) {
  uint8_t status = 0, raw[12];
  if (!imuRead(0x1E, &status, 1) || (status & 0x03) != 0x03) return false;
  if (!imuRead(0x22, raw, sizeof raw)) return false;
  for (int k = 0; k < 3; k++) {
    int16_t g = (int16_t)(raw[2 * k] | (raw[2 * k + 1] << 8));
    int16_t a = (int16_t)(raw[6 + 2 * k] | (raw[6 + 2 * k + 1] << 8));
    x->v[k] = a;  // accelerometer: 0.061 mg/LSB at 2 g = full scale / 32768 already
    // gyroscope: 8.75 mdps/LSB at 250 dps (70 at 2000) = 1.14688 protocol counts
    x->v[3 + k] = hm_rescale(g, 3584, 3125);
  }
  return true;
}

// ------------------------------------------------------------------------------ board hooks

static void identify(void *ctx, uint8_t seconds) {
  (void)ctx;
  identifyUntilMs = seconds ? millis() + 1000UL * seconds : 0;
  if (!seconds) digitalWrite(LED_GREEN, HIGH);  // LEDs are active low
}

static void boardStatus(void *ctx, hm_status_t *st) {
  (void)ctx;
  BLEConnection *conn = Bluefruit.Connection(connHandle);
  st->board_id = HM_BOARD_XIAO_SENSE;
  st->battery_pct = batteryPct;
  st->att_mtu = conn ? conn->getMtu() : 23;
  st->conn_interval_1250us = conn ? conn->getConnectionInterval() : 0;
  st->state = (uint8_t)((imuOk ? HM_STATE_IMU_OK : 0) | (identifyUntilMs ? HM_STATE_IDENTIFYING : 0));
}

static bool sendData(void *ctx, const uint8_t *packet, size_t len) {
  (void)ctx;
  return connHandle != BLE_CONN_HANDLE_INVALID && dataChr.notify(connHandle, packet, (uint16_t)len);
}

// ------------------------------------------------------------------------------ BLE callbacks

static void onControlWrite(uint16_t conn, BLECharacteristic *chr, uint8_t *data, uint16_t len) {
  (void)conn;
  (void)chr;
  if (commandPending) return;  // one command at a time; the client waits for each reply
  // The parser reads parameter bytes only when the length is right (<= 3), so a longer
  // write keeps its true length (answered BAD_LENGTH) while only its head is copied.
  commandLen = len;
  memcpy(commandBytes, data, len < sizeof commandBytes ? len : sizeof commandBytes);
  commandPending = true;
}

static void onConnect(uint16_t conn) {
  connHandle = conn;
  connectedAtMs = millis();
  connParamsRequested = false;
}

static void onDisconnect(uint16_t conn, uint8_t reason) {
  (void)conn;
  (void)reason;
  connHandle = BLE_CONN_HANDLE_INVALID;
  linkLost = true;  // loop() stops the stream
}

// PROTOCOL.md section 2: interval 7.5-15 ms, latency 0, supervision timeout 2 s.
static void requestConnParams() {
  ble_gap_conn_params_t params;
  params.min_conn_interval = 6;
  params.max_conn_interval = 12;
  params.slave_latency = 0;
  params.conn_sup_timeout = 200;
  sd_ble_gap_conn_param_update(connHandle, &params);
}

// ------------------------------------------------------------------------------ battery

static void readBattery() {
  // VBAT divider (1 M / 510 k) on P0.31, enabled by driving PIN_VBAT_ENABLE (P0.14) low.
  analogReadResolution(12);
  float volts = analogRead(PIN_VBAT) * (3.6f / 4096.0f) * (1510.0f / 510.0f);
  float pct = (volts - 3.3f) / (4.2f - 3.3f) * 100.0f;
  uint8_t level = (uint8_t)(pct < 0 ? 0 : pct > 100 ? 100 : pct);
  if (level != batteryPct) {
    batteryPct = level;
    blebas.write(level);
    if (connHandle != BLE_CONN_HANDLE_INVALID) blebas.notify(level);
  }
}

// ------------------------------------------------------------------------------ setup / loop

static void startAdvertising() {
  Bluefruit.Advertising.addFlags(BLE_GAP_ADV_FLAGS_LE_ONLY_GENERAL_DISC_MODE);
  Bluefruit.Advertising.addService(hmService);
  Bluefruit.ScanResponse.addName();
  Bluefruit.Advertising.restartOnDisconnect(true);
  Bluefruit.Advertising.setInterval(32, 244);  // 20 ms fast, 152.5 ms slow (0.625 ms units)
  Bluefruit.Advertising.setFastTimeout(30);
  Bluefruit.Advertising.start(0);
}

void setup() {
  pinMode(LED_GREEN, OUTPUT);
  digitalWrite(LED_GREEN, HIGH);
  pinMode(PIN_VBAT_ENABLE, OUTPUT);
  digitalWrite(PIN_VBAT_ENABLE, LOW);

  pinMode(PIN_LSM6DS3TR_C_POWER, OUTPUT);  // the IMU's supply is switched by P1.08
  digitalWrite(PIN_LSM6DS3TR_C_POWER, HIGH);
  delay(50);
  IMU_WIRE.begin();
  IMU_WIRE.setClock(400000);
  imuOk = imuConfigure(nullptr, HM_DEFAULT_RATE_CODE, HM_DEFAULT_ACC_CODE, HM_DEFAULT_GYRO_CODE);
  imuSleep(nullptr);

  hm_stream_init(&stream, sendData, nullptr);
  board.ctx = nullptr;
  board.imu_configure = imuConfigure;
  board.imu_sleep = imuSleep;
  board.identify = identify;
  board.board_status = boardStatus;

  Bluefruit.configPrphBandwidth(BANDWIDTH_MAX);  // ATT_MTU 247, longer event, bigger HVN queue
  Bluefruit.begin();
  Bluefruit.setTxPower(4);
  uint8_t mac[6];
  Bluefruit.getAddr(mac);  // mac[0] is the least significant byte
  char name[16];
  snprintf(name, sizeof name, "holdmon-%02X%02X", mac[1], mac[0]);
  Bluefruit.setName(name);
  Bluefruit.Periph.setConnectCallback(onConnect);
  Bluefruit.Periph.setDisconnectCallback(onDisconnect);

  bledis.setManufacturer("holdmon");
  bledis.setModel("XIAO nRF52840 Sense");
  bledis.setFirmwareRev(HM_FIRMWARE_VERSION);
  bledis.begin();
  blebas.begin();

  hmService.begin();
  dataChr.setProperties(CHR_PROPS_NOTIFY);
  dataChr.setPermission(SECMODE_OPEN, SECMODE_NO_ACCESS);
  dataChr.setMaxLen(HM_MAX_PACKET);
  dataChr.begin();
  controlChr.setProperties(CHR_PROPS_WRITE | CHR_PROPS_WRITE_WO_RESP | CHR_PROPS_NOTIFY);
  controlChr.setPermission(SECMODE_OPEN, SECMODE_OPEN);
  controlChr.setMaxLen(HM_MAX_REPLY);
  controlChr.setWriteCallback(onControlWrite);
  controlChr.begin();

  readBattery();
  startAdvertising();
}

void loop() {
  hm_sample_t x;
  uint32_t nowMs = millis();

  if (linkLost) {
    linkLost = false;
    commandPending = false;
    hm_stream_stop(&stream);  // its last packet is refused and counted as dropped
    imuSleep(nullptr);
    hm_stream_set_mtu(&stream, 23);
  }

  if (stream.running && imuPoll(&x)) {
    hm_stream_push(&stream, micros(), &x);  // micros(): the protocol's 32-bit clock
  }

  if (commandPending) {
    uint8_t reply[HM_MAX_REPLY];
    size_t len = hm_device_handle_write(&stream, &board, commandBytes, commandLen, reply, sizeof reply);
    controlChr.notify(connHandle, reply, (uint16_t)len);
    commandPending = false;
  }

  if (connHandle != BLE_CONN_HANDLE_INVALID) {
    BLEConnection *conn = Bluefruit.Connection(connHandle);
    if (conn && conn->getMtu() != stream.att_mtu) hm_stream_set_mtu(&stream, conn->getMtu());
    if (!connParamsRequested && nowMs - connectedAtMs >= 1000) {
      requestConnParams();
      connParamsRequested = true;
    }
  }

  if (identifyUntilMs) {
    if ((int32_t)(nowMs - identifyUntilMs) >= 0) {
      identify(nullptr, 0);
    } else {
      digitalWrite(LED_GREEN, (nowMs / 125) % 2 ? LOW : HIGH);  // 4 Hz
    }
  }

  static uint32_t lastBatteryMs = 0;
  if (nowMs - lastBatteryMs >= 60000UL) {
    lastBatteryMs = nowMs;
    readBattery();
  }
}
