/*
 * holdmon GATT protocol v1 - portable part of the firmware (C99). See holdmon_packet.h and
 * firmware_notes/PROTOCOL.md.
 */
#include "holdmon_packet.h"

#include <string.h>

static const uint16_t RATE_HZ[HM_RATE_CODES] = {50u, 100u, 200u, 400u};

/* Command table: opcode -> total write length (opcode included). */
static int command_length(uint8_t opcode)
{
    switch (opcode) {
    case HM_OP_START:
    case HM_OP_STOP:
    case HM_OP_READ_STATUS:
        return 1;
    case HM_OP_SET_RATE:
    case HM_OP_IDENTIFY:
        return 2;
    case HM_OP_SET_RANGES:
        return 3;
    default:
        return -1;
    }
}

/* Exclusive upper bound of parameter i of a command. */
static unsigned param_limit(uint8_t opcode, unsigned i)
{
    switch (opcode) {
    case HM_OP_SET_RATE:
        return HM_RATE_CODES;
    case HM_OP_SET_RANGES:
        return i == 0u ? HM_ACC_CODES : HM_GYRO_CODES;
    default:
        return 256u;
    }
}

/* Reply length for an opcode: 2 bytes (opcode | 0x80, status) plus its fields. */
static size_t reply_length(uint8_t opcode)
{
    switch (opcode) {
    case HM_OP_SET_RATE:
        return 3u;
    case HM_OP_SET_RANGES:
        return 4u;
    case HM_OP_READ_STATUS:
        return HM_MAX_REPLY;
    default:
        return 2u;
    }
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
}

static uint8_t config_byte(uint8_t rate_code, uint8_t acc_code, uint8_t gyro_code)
{
    return (uint8_t)((rate_code & 0x03u) | ((acc_code & 0x03u) << 2) | ((gyro_code & 0x03u) << 4));
}

uint32_t hm_period_us(uint8_t rate_code)
{
    return rate_code < HM_RATE_CODES ? 1000000u / RATE_HZ[rate_code] : 0u;
}

uint8_t hm_samples_per_packet(uint8_t rate_code, uint16_t att_mtu)
{
    unsigned by_rate = rate_code < HM_RATE_CODES ? RATE_HZ[rate_code] / HM_TARGET_PACKET_RATE_HZ : 1u;
    unsigned fits = att_mtu >= HM_ATT_HEADER_SIZE + HM_HEADER_SIZE + HM_SAMPLE_SIZE
                        ? (att_mtu - HM_ATT_HEADER_SIZE - HM_HEADER_SIZE) / HM_SAMPLE_SIZE
                        : 1u;
    unsigned n = by_rate < fits ? by_rate : fits;
    if (n > HM_MAX_SAMPLES) {
        n = HM_MAX_SAMPLES;
    }
    return (uint8_t)(n < 1u ? 1u : n);
}

int16_t hm_rescale(int32_t raw, int32_t num, int32_t den)
{
    int64_t prod = (int64_t)raw * (int64_t)num;
    int64_t half = (int64_t)den / 2;
    int64_t q = prod >= 0 ? (prod + half) / den : -((-prod + half) / den);
    if (q > 32767) {
        return 32767;
    }
    if (q < -32768) {
        return -32768;
    }
    return (int16_t)q;
}

size_t hm_encode_data(uint8_t *out, size_t cap, const hm_header_t *h, const hm_sample_t *samples)
{
    size_t len;
    unsigned i, k;
    if (h->n < 1u || h->n > HM_MAX_SAMPLES || h->rate_code >= HM_RATE_CODES ||
        h->acc_code >= HM_ACC_CODES || h->gyro_code >= HM_GYRO_CODES ||
        (h->flags & (uint8_t)~(HM_FLAG_STREAM_START | HM_FLAG_DEVICE_DROP)) != 0u) {
        return 0u;
    }
    len = HM_HEADER_SIZE + HM_SAMPLE_SIZE * (size_t)h->n;
    if (cap < len) {
        return 0u;
    }
    out[0] = (uint8_t)((HM_PROTOCOL_VERSION << 5) | h->n);
    out[1] = (uint8_t)(config_byte(h->rate_code, h->acc_code, h->gyro_code) | h->flags);
    put_u16(out + 2, h->seq);
    put_u32(out + 4, h->t_first_us);
    for (i = 0; i < h->n; i++) {
        for (k = 0; k < 6u; k++) {
            put_u16(out + HM_HEADER_SIZE + HM_SAMPLE_SIZE * i + 2u * k, (uint16_t)samples[i].v[k]);
        }
    }
    return len;
}

uint8_t hm_parse_command(const uint8_t *in, size_t len, hm_command_t *cmd)
{
    int want;
    unsigned i;
    memset(cmd, 0, sizeof *cmd);
    if (len == 0u) {
        cmd->status = HM_STATUS_BAD_LENGTH;
        return cmd->status;
    }
    cmd->opcode = in[0];
    want = command_length(in[0]);
    if (want < 0) {
        cmd->status = HM_STATUS_UNKNOWN_OPCODE;
    } else if (len != (size_t)want) {
        cmd->status = HM_STATUS_BAD_LENGTH;
    } else {
        cmd->nparams = (uint8_t)(want - 1);
        cmd->status = HM_STATUS_OK;
        for (i = 0; i < cmd->nparams; i++) {
            cmd->params[i] = in[1u + i];
            if (cmd->params[i] >= param_limit(cmd->opcode, i)) {
                cmd->status = HM_STATUS_BAD_VALUE;
            }
        }
    }
    return cmd->status;
}

size_t hm_encode_reply(uint8_t *out, size_t cap, uint8_t opcode, uint8_t status, const hm_status_t *st)
{
    size_t len = command_length(opcode) < 0 ? 2u : reply_length(opcode);
    if (cap < len) {
        return 0u;
    }
    out[0] = (uint8_t)(opcode | HM_REPLY_FLAG);
    out[1] = status;
    if (opcode == HM_OP_SET_RATE) {
        out[2] = st->rate_code;
    } else if (opcode == HM_OP_SET_RANGES) {
        out[2] = st->acc_code;
        out[3] = st->gyro_code;
    } else if (opcode == HM_OP_READ_STATUS) {
        out[2] = HM_PROTOCOL_VERSION;
        out[3] = st->board_id;
        out[4] = st->state;
        out[5] = config_byte(st->rate_code, st->acc_code, st->gyro_code);
        out[6] = st->battery_pct;
        out[7] = st->samples_per_packet;
        put_u16(out + 8, st->att_mtu);
        put_u16(out + 10, st->conn_interval_1250us);
        put_u16(out + 12, st->next_seq);
        put_u32(out + 14, st->dropped_samples);
    }
    return len;
}

/* ------------------------------------------------------------------------------- stream */

static void flush(hm_stream_t *s)
{
    uint8_t packet[HM_MAX_PACKET];
    hm_header_t h;
    size_t len;
    if (s->count == 0u) {
        return;
    }
    h.seq = s->first_seq;
    h.t_first_us = s->first_us;
    h.n = s->count;
    h.rate_code = s->rate_code;
    h.acc_code = s->acc_code;
    h.gyro_code = s->gyro_code;
    h.flags = s->pending_flags;
    len = hm_encode_data(packet, sizeof packet, &h, s->buf);
    if (len > 0u && s->send(s->ctx, packet, len)) {
        s->pending_flags = 0u;
    } else {
        s->dropped += s->count;
        s->pending_flags |= HM_FLAG_DEVICE_DROP;
    }
    s->count = 0u;
}

void hm_stream_init(hm_stream_t *s, hm_send_fn send, void *ctx)
{
    memset(s, 0, sizeof *s);
    s->send = send;
    s->ctx = ctx;
    s->rate_code = HM_DEFAULT_RATE_CODE;
    s->acc_code = HM_DEFAULT_ACC_CODE;
    s->gyro_code = HM_DEFAULT_GYRO_CODE;
    s->att_mtu = 23u;
    s->per_packet = 1u;
}

void hm_stream_start(hm_stream_t *s)
{
    if (s->running) {
        return;
    }
    s->running = true;
    s->grid_open = false;
    s->pending_flags |= HM_FLAG_STREAM_START;
}

void hm_stream_stop(hm_stream_t *s)
{
    if (!s->running) {
        return;
    }
    flush(s);
    s->running = false;
    s->grid_open = false;
}

void hm_stream_set_mtu(hm_stream_t *s, uint16_t att_mtu)
{
    s->att_mtu = att_mtu;
    s->per_packet = hm_samples_per_packet(s->rate_code, att_mtu);
    if (s->count >= s->per_packet) {
        flush(s);
    }
}

void hm_stream_configure(hm_stream_t *s, uint8_t rate_code, uint8_t acc_code, uint8_t gyro_code)
{
    if (rate_code == s->rate_code && acc_code == s->acc_code && gyro_code == s->gyro_code) {
        return;
    }
    flush(s);
    s->rate_code = rate_code;
    s->acc_code = acc_code;
    s->gyro_code = gyro_code;
    s->per_packet = hm_samples_per_packet(rate_code, s->att_mtu);
    if (s->running) {
        s->grid_open = false;
        s->pending_flags |= HM_FLAG_STREAM_START;
    }
}

void hm_stream_push(hm_stream_t *s, uint32_t t_us, const hm_sample_t *x)
{
    uint32_t period = hm_period_us(s->rate_code);
    uint32_t late, missed;
    if (!s->running) {
        return;
    }
    if (!s->grid_open) {
        s->next_due_us = t_us;
        s->grid_open = true;
    }
    if ((int32_t)(t_us - s->next_due_us) < 0) {
        return; /* before the next slot: this IMU sample is not needed */
    }
    late = t_us - s->next_due_us;
    missed = late / period;
    if (missed > 0u) {
        /* Slots with no IMU sample: keep packets consecutive, count the hole exactly. */
        flush(s);
        s->next_seq = (uint16_t)(s->next_seq + missed);
        s->next_due_us += missed * period;
        s->dropped += missed;
        s->pending_flags |= HM_FLAG_DEVICE_DROP;
    }
    if (s->count == 0u) {
        s->first_seq = s->next_seq;
        s->first_us = s->next_due_us;
    }
    s->buf[s->count++] = *x;
    s->next_seq = (uint16_t)(s->next_seq + 1u);
    s->next_due_us += period;
    if (s->count >= s->per_packet) {
        flush(s);
    }
}

/* ------------------------------------------------------------------------------- device */

void hm_device_status(const hm_stream_t *s, const hm_board_t *b, hm_status_t *st)
{
    memset(st, 0, sizeof *st);
    st->battery_pct = HM_BATTERY_UNKNOWN;
    b->board_status(b->ctx, st);
    st->state = (uint8_t)((st->state & (HM_STATE_IMU_OK | HM_STATE_IDENTIFYING)) |
                          (s->running ? HM_STATE_STREAMING : 0u));
    st->rate_code = s->rate_code;
    st->acc_code = s->acc_code;
    st->gyro_code = s->gyro_code;
    st->samples_per_packet = s->per_packet;
    st->next_seq = s->next_seq;
    st->dropped_samples = s->dropped;
}

/* New codes: applied to the IMU at once when streaming, else at the next START. */
static uint8_t apply_codes(hm_stream_t *s, const hm_board_t *b, uint8_t rate, uint8_t acc, uint8_t gyro)
{
    bool same = rate == s->rate_code && acc == s->acc_code && gyro == s->gyro_code;
    if (s->running && !same && !b->imu_configure(b->ctx, rate, acc, gyro)) {
        return HM_STATUS_IMU_ERROR;
    }
    hm_stream_configure(s, rate, acc, gyro);
    return HM_STATUS_OK;
}

static uint8_t execute(hm_stream_t *s, const hm_board_t *b, const hm_command_t *cmd)
{
    switch (cmd->opcode) {
    case HM_OP_START:
        if (s->running) {
            return HM_STATUS_OK;
        }
        if (!b->imu_configure(b->ctx, s->rate_code, s->acc_code, s->gyro_code)) {
            return HM_STATUS_IMU_ERROR;
        }
        hm_stream_start(s);
        return HM_STATUS_OK;
    case HM_OP_STOP:
        if (s->running) {
            hm_stream_stop(s);
            b->imu_sleep(b->ctx);
        }
        return HM_STATUS_OK;
    case HM_OP_SET_RATE:
        return apply_codes(s, b, cmd->params[0], s->acc_code, s->gyro_code);
    case HM_OP_SET_RANGES:
        return apply_codes(s, b, s->rate_code, cmd->params[0], cmd->params[1]);
    case HM_OP_IDENTIFY:
        b->identify(b->ctx, cmd->params[0]);
        return HM_STATUS_OK;
    default: /* HM_OP_READ_STATUS */
        return HM_STATUS_OK;
    }
}

size_t hm_device_handle_write(hm_stream_t *s, const hm_board_t *b, const uint8_t *in, size_t len,
                              uint8_t *reply, size_t cap)
{
    hm_command_t cmd;
    hm_status_t st;
    uint8_t status = hm_parse_command(in, len, &cmd);
    if (status == HM_STATUS_OK) {
        status = execute(s, b, &cmd);
    }
    hm_device_status(s, b, &st);
    return hm_encode_reply(reply, cap, cmd.opcode, status, &st);
}
