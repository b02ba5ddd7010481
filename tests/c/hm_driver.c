/*
 * Test driver for firmware_notes/portable/holdmon_packet.c, used by tests/test_firmware_c.py.
 *
 * Reads one request per line on stdin and answers with zero or more lines, then a line ".".
 *   D seq t_us n rate acc gyro flags v*6n  -> "P <hex>" (hm_encode_data) or "ERR"
 *   C <hex>|-                              -> "C opcode status nparams p0 p1" (hm_parse_command)
 *   W <hex>|-                              -> device write: data packets, then "R <hex>"
 *   B imu_ok send_ok                       -> fake board behaviour
 *   M att_mtu                              -> hm_stream_set_mtu
 *   X t_us v*6                             -> hm_stream_push: "P <hex>" sent, "Q <hex>" refused
 *   K raw num den                          -> "K value" (hm_rescale)
 *   N rate_code att_mtu                    -> "N n" (hm_samples_per_packet)
 * Data packets produced by the stream are printed as they are sent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "holdmon_packet.h"

typedef struct {
    int imu_ok;
    int send_ok;
    uint16_t mtu;
    uint8_t identify_s;
} fake_board_t;

static void print_hex(const char *tag, const uint8_t *p, size_t len)
{
    size_t i;
    printf("%s ", tag);
    for (i = 0; i < len; i++) {
        printf("%02x", p[i]);
    }
    printf("\n");
}

static bool fake_send(void *ctx, const uint8_t *packet, size_t len)
{
    fake_board_t *fb = (fake_board_t *)ctx;
    print_hex(fb->send_ok ? "P" : "Q", packet, len);
    return fb->send_ok != 0;
}

static bool fake_configure(void *ctx, uint8_t rate, uint8_t acc, uint8_t gyro)
{
    (void)rate;
    (void)acc;
    (void)gyro;
    return ((fake_board_t *)ctx)->imu_ok != 0;
}

static void fake_sleep(void *ctx)
{
    (void)ctx;
}

static void fake_identify(void *ctx, uint8_t seconds)
{
    ((fake_board_t *)ctx)->identify_s = seconds;
}

static void fake_status(void *ctx, hm_status_t *st)
{
    fake_board_t *fb = (fake_board_t *)ctx;
    st->board_id = HM_BOARD_XIAO_SENSE;
    st->battery_pct = 87u;
    st->att_mtu = fb->mtu;
    st->conn_interval_1250us = 12u;
    st->state = (uint8_t)((fb->imu_ok ? HM_STATE_IMU_OK : 0u) | (fb->identify_s ? HM_STATE_IDENTIFYING : 0u));
}

/* Parses a hex string ("-" = empty) into out; returns the length or -1. */
static long parse_hex(const char *text, uint8_t *out, size_t cap)
{
    size_t n = 0, len = strlen(text);
    if (strcmp(text, "-") == 0) {
        return 0;
    }
    if (len % 2u != 0u || len / 2u > cap) {
        return -1;
    }
    for (n = 0; n < len / 2u; n++) {
        char pair[3] = {text[2u * n], text[2u * n + 1u], '\0'};
        out[n] = (uint8_t)strtoul(pair, NULL, 16);
    }
    return (long)n;
}

static void next_long(char **cursor, long long *value)
{
    char *end;
    *value = strtoll(*cursor, &end, 0);
    *cursor = end;
}

int main(void)
{
    static char line[8192];
    fake_board_t fb = {1, 1, 23u, 0u};
    hm_board_t board = {0};
    hm_stream_t stream;
    board.ctx = &fb;
    board.imu_configure = fake_configure;
    board.imu_sleep = fake_sleep;
    board.identify = fake_identify;
    board.board_status = fake_status;
    hm_stream_init(&stream, fake_send, &fb);

    while (fgets(line, sizeof line, stdin) != NULL) {
        char *cur = line + 1;
        long long v[8];
        uint8_t buf[512];
        char word[1100];
        size_t i;
        switch (line[0]) {
        case 'D': {
            hm_header_t h;
            hm_sample_t samples[HM_MAX_SAMPLES];
            size_t len;
            for (i = 0; i < 7u; i++) {
                next_long(&cur, &v[i]);
            }
            h.seq = (uint16_t)v[0];
            h.t_first_us = (uint32_t)v[1];
            h.n = (uint8_t)v[2];
            h.rate_code = (uint8_t)v[3];
            h.acc_code = (uint8_t)v[4];
            h.gyro_code = (uint8_t)v[5];
            h.flags = (uint8_t)v[6];
            for (i = 0; i < 6u * (h.n <= HM_MAX_SAMPLES ? h.n : 0u); i++) {
                next_long(&cur, &v[0]);
                samples[i / 6u].v[i % 6u] = (int16_t)v[0];
            }
            len = hm_encode_data(buf, sizeof buf, &h, samples);
            if (len == 0u) {
                printf("ERR\n");
            } else {
                print_hex("P", buf, len);
            }
            break;
        }
        case 'C':
        case 'W': {
            long len;
            if (sscanf(line + 1, "%1099s", word) != 1) {
                word[0] = '-';
                word[1] = '\0';
            }
            len = parse_hex(word, buf, sizeof buf);
            if (len < 0) {
                printf("ERR\n");
            } else if (line[0] == 'C') {
                hm_command_t cmd;
                hm_parse_command(buf, (size_t)len, &cmd);
                printf("C %u %u %u %u %u\n", cmd.opcode, cmd.status, cmd.nparams, cmd.params[0], cmd.params[1]);
            } else {
                uint8_t reply[HM_MAX_REPLY];
                size_t rlen = hm_device_handle_write(&stream, &board, buf, (size_t)len, reply, sizeof reply);
                print_hex("R", reply, rlen);
            }
            break;
        }
        case 'B':
            next_long(&cur, &v[0]);
            next_long(&cur, &v[1]);
            fb.imu_ok = (int)v[0];
            fb.send_ok = (int)v[1];
            break;
        case 'M':
            next_long(&cur, &v[0]);
            fb.mtu = (uint16_t)v[0];
            hm_stream_set_mtu(&stream, fb.mtu);
            break;
        case 'X': {
            hm_sample_t x;
            uint32_t t;
            next_long(&cur, &v[0]);
            t = (uint32_t)v[0];
            for (i = 0; i < 6u; i++) {
                next_long(&cur, &v[1]);
                x.v[i] = (int16_t)v[1];
            }
            hm_stream_push(&stream, t, &x);
            break;
        }
        case 'K':
            for (i = 0; i < 3u; i++) {
                next_long(&cur, &v[i]);
            }
            printf("K %d\n", hm_rescale((int32_t)v[0], (int32_t)v[1], (int32_t)v[2]));
            break;
        case 'N':
            next_long(&cur, &v[0]);
            next_long(&cur, &v[1]);
            printf("N %u\n", hm_samples_per_packet((uint8_t)v[0], (uint16_t)v[1]));
            break;
        default:
            printf("ERR\n");
            break;
        }
        printf(".\n");
    }
    return 0;
}
