/* codecs/byteorder.h: big-endian integers, as PostgreSQL's binary formats carry them. */
#ifndef AGENTDB_BYTEORDER_H
#define AGENTDB_BYTEORDER_H

#include <stdint.h>

static inline uint16_t rd_u16(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint16_t)((u[0] << 8) | u[1]);
}

static inline uint32_t rd_u32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return ((uint32_t)u[0] << 24) | ((uint32_t)u[1] << 16) | ((uint32_t)u[2] << 8) | u[3];
}

static inline uint64_t rd_u64(const char *p)
{
    return ((uint64_t)rd_u32(p) << 32) | rd_u32(p + 4);
}

static inline void wr_u16(char *p, uint16_t v)
{
    unsigned char *u = (unsigned char *)p;
    u[0] = (unsigned char)(v >> 8);
    u[1] = (unsigned char)v;
}

static inline void wr_u32(char *p, uint32_t v)
{
    unsigned char *u = (unsigned char *)p;
    u[0] = (unsigned char)(v >> 24);
    u[1] = (unsigned char)(v >> 16);
    u[2] = (unsigned char)(v >> 8);
    u[3] = (unsigned char)v;
}

static inline void wr_u64(char *p, uint64_t v)
{
    wr_u32(p, (uint32_t)(v >> 32));
    wr_u32(p + 4, (uint32_t)v);
}

#endif
