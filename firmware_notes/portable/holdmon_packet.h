/*
 * holdmon GATT protocol v1 - portable part of the firmware (C99, no Arduino headers).
 *
 * The specification is firmware_notes/PROTOCOL.md. This code builds data notifications,
 * parses control writes and builds their replies, and turns IMU samples arriving at the
 * IMU's own rate into samples on an exact grid of the requested rate, numbered by a 16-bit
 * sample index and stamped with a 32-bit microsecond clock. The board sketch only reads the
 * IMU, reads the clock and hands bytes to the BLE stack.
 */
#ifndef HOLDMON_PACKET_H
#define HOLDMON_PACKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HM_PROTOCOL_VERSION 1u
#define HM_HEADER_SIZE 8u
#define HM_SAMPLE_SIZE 12u
#define HM_MAX_SAMPLES 19u
#define HM_MAX_PACKET (HM_HEADER_SIZE + HM_SAMPLE_SIZE * HM_MAX_SAMPLES)
#define HM_MAX_REPLY 18u
#define HM_REPLY_FLAG 0x80u
#define HM_TARGET_PACKET_RATE_HZ 25u
#define HM_ATT_HEADER_SIZE 3u

/* Bits 6 and 7 of the data header's config byte. */
#define HM_FLAG_STREAM_START 0x40u
#define HM_FLAG_DEVICE_DROP 0x80u

/* Bits of the READ_STATUS state byte. */
#define HM_STATE_STREAMING 0x01u
#define HM_STATE_IMU_OK 0x02u
#define HM_STATE_IDENTIFYING 0x04u

#define HM_BATTERY_UNKNOWN 0xFFu

enum hm_opcode {
    HM_OP_START = 0x01,
    HM_OP_STOP = 0x02,
    HM_OP_SET_RATE = 0x03,
    HM_OP_SET_RANGES = 0x04,
    HM_OP_IDENTIFY = 0x05,
    HM_OP_READ_STATUS = 0x06
};

enum hm_status {
    HM_STATUS_OK = 0x00,
    HM_STATUS_UNKNOWN_OPCODE = 0x01,
    HM_STATUS_BAD_LENGTH = 0x02,
    HM_STATUS_BAD_VALUE = 0x03,
    HM_STATUS_IMU_ERROR = 0x04
};

enum hm_board_id { HM_BOARD_UNSPECIFIED = 0, HM_BOARD_XIAO_SENSE = 1, HM_BOARD_NANO33_SENSE_REV2 = 2 };

/* Codes (PROTOCOL.md section 3.4). */
#define HM_RATE_CODES 4u  /* 50, 100, 200, 400 Hz */
#define HM_ACC_CODES 4u   /* +-2, 4, 8, 16 g */
#define HM_GYRO_CODES 4u  /* +-250, 500, 1000, 2000 deg/s */
#define HM_DEFAULT_RATE_CODE 1u
#define HM_DEFAULT_ACC_CODE 2u
#define HM_DEFAULT_GYRO_CODE 2u

/* One sample in protocol counts: ax, ay, az, gx, gy, gz (one count = full scale / 32768). */
typedef struct {
    int16_t v[6];
} hm_sample_t;

typedef struct {
    uint16_t seq;        /* sample index of the first sample, mod 65536 */
    uint32_t t_first_us; /* clock at the first sample, mod 2^32 */
    uint8_t n;           /* 1..HM_MAX_SAMPLES */
    uint8_t rate_code;
    uint8_t acc_code;
    uint8_t gyro_code;
    uint8_t flags; /* HM_FLAG_* */
} hm_header_t;

typedef struct {
    uint8_t opcode;
    uint8_t status;    /* what the device replies with */
    uint8_t nparams;   /* parameters actually read (0 unless the length was right) */
    uint8_t params[2]; /* in command order */
} hm_command_t;

/* Everything READ_STATUS reports (PROTOCOL.md section 5). */
typedef struct {
    uint8_t board_id;
    uint8_t state; /* HM_STATE_* */
    uint8_t rate_code;
    uint8_t acc_code;
    uint8_t gyro_code;
    uint8_t battery_pct;
    uint8_t samples_per_packet;
    uint16_t att_mtu;
    uint16_t conn_interval_1250us;
    uint16_t next_seq;
    uint32_t dropped_samples;
} hm_status_t;

/* Sample period in microseconds for a rate code (20000, 10000, 5000, 2500); 0 for a bad code. */
uint32_t hm_period_us(uint8_t rate_code);

/* min(rate/25, (att_mtu - 3 - 8) / 12, 19), at least 1. */
uint8_t hm_samples_per_packet(uint8_t rate_code, uint16_t att_mtu);

/* round(raw * num / den) (halves away from zero), saturated to int16. den > 0. */
int16_t hm_rescale(int32_t raw, int32_t num, int32_t den);

/* Data notification bytes into out; returns the length, or 0 if cap is too small or h is invalid. */
size_t hm_encode_data(uint8_t *out, size_t cap, const hm_header_t *h, const hm_sample_t *samples);

/* Parses a control write; never fails: cmd->status says what to reply. Returns cmd->status. */
uint8_t hm_parse_command(const uint8_t *in, size_t len, hm_command_t *cmd);

/* Reply bytes for (opcode, status) with the fields taken from st; returns the length or 0. */
size_t hm_encode_reply(uint8_t *out, size_t cap, uint8_t opcode, uint8_t status, const hm_status_t *st);

/* ------------------------------------------------------------------------------- stream */

/* Hands one notification to the BLE stack; returns false if it could not be queued. */
typedef bool (*hm_send_fn)(void *ctx, const uint8_t *packet, size_t len);

typedef struct {
    hm_send_fn send;
    void *ctx;
    uint8_t rate_code, acc_code, gyro_code;
    uint16_t att_mtu;      /* negotiated ATT_MTU */
    uint8_t per_packet;    /* samples per notification */
    bool running;
    bool grid_open;        /* next_due_us is valid */
    uint32_t next_due_us;  /* time of the next sample slot */
    uint16_t next_seq;     /* index of the next sample slot */
    uint32_t dropped;      /* slots the device could not deliver since init */
    uint8_t pending_flags; /* flags for the next packet sent */
    uint8_t count;         /* samples buffered */
    uint16_t first_seq;
    uint32_t first_us;
    hm_sample_t buf[HM_MAX_SAMPLES];
} hm_stream_t;

/* Defaults (100 Hz, +-8 g, +-1000 deg/s, MTU 23), stopped, sample index 0. */
void hm_stream_init(hm_stream_t *s, hm_send_fn send, void *ctx);
/* Starts streaming (no-op if running); the next packet carries STREAM_START. */
void hm_stream_start(hm_stream_t *s);
/* Sends the buffered samples as a last packet and stops (no-op if stopped). */
void hm_stream_stop(hm_stream_t *s);
/* New codes: flushes, and if running restarts the grid and marks STREAM_START. Codes must be valid. */
void hm_stream_configure(hm_stream_t *s, uint8_t rate_code, uint8_t acc_code, uint8_t gyro_code);
/* Negotiated ATT_MTU (23..517); changes the batch size from the next packet on. */
void hm_stream_set_mtu(hm_stream_t *s, uint16_t att_mtu);
/*
 * One IMU sample taken at clock t_us, already in protocol counts. The first sample after
 * start opens a grid of slots every period; each slot takes the first IMU sample at or after
 * its time and is stamped with the slot time. Slots that passed with no IMU sample are
 * dropped: they consume indices, count in `dropped` and flag DEVICE_DROP.
 */
void hm_stream_push(hm_stream_t *s, uint32_t t_us, const hm_sample_t *x);

/* ------------------------------------------------------------------------------- device */

/* What the board provides to the command handler. */
typedef struct {
    void *ctx;
    /* Configure the IMU for these codes and run it; false if it does not respond. */
    bool (*imu_configure)(void *ctx, uint8_t rate_code, uint8_t acc_code, uint8_t gyro_code);
    /* Put the IMU to sleep (streaming stopped). */
    void (*imu_sleep)(void *ctx);
    /* Blink for `seconds` (0 = stop). */
    void (*identify)(void *ctx, uint8_t seconds);
    /* Fill board_id, battery_pct, att_mtu, conn_interval_1250us and the IMU_OK/IDENTIFYING bits. */
    void (*board_status)(void *ctx, hm_status_t *st);
} hm_board_t;

/* Current status: stream fields from s, the rest from the board. */
void hm_device_status(const hm_stream_t *s, const hm_board_t *b, hm_status_t *st);

/* Handles one control write: applies it and writes the reply into reply (cap >= HM_MAX_REPLY).
 * Returns the reply length. */
size_t hm_device_handle_write(hm_stream_t *s, const hm_board_t *b, const uint8_t *in, size_t len,
                              uint8_t *reply, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* HOLDMON_PACKET_H */
