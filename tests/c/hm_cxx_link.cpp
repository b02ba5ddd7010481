// Links C++ (as an Arduino sketch is) against the C99 portable code: checks the extern "C" linkage.
// Prints worked example A of firmware_notes/PROTOCOL.md as hex.
#include <cstdio>

#include "holdmon_packet.h"

int main()
{
    hm_header_t h = {0, 1000000u, 1, 1, 2, 2, HM_FLAG_STREAM_START};
    hm_sample_t s = {{-41, 120, 4093, 33, -7, 0}};
    uint8_t out[HM_MAX_PACKET];
    size_t len = hm_encode_data(out, sizeof out, &h, &s);
    for (size_t i = 0; i < len; i++) {
        std::printf("%02x", out[i]);
    }
    std::printf("\n");
    return len == 20u ? 0 : 1;
}
