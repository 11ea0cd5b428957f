// SPDX-License-Identifier: GPL-2.0
/*
 * sipedge media relay: XDP fast path (compiled and loaded by bcc from sipedge-mediad).
 *
 * A UDP packet whose exact destination (address, port) is a relay port in `sessions` (there is
 * no wildcard address: a packet to an address the box does not own is never relayed) and
 * whose source is the leg's latched peer is rewritten and sent on toward the other leg's peer:
 * MAC from bpf_fib_lookup (cached per port and CPU for up to 1 s), IP source/destination (TTL
 * or hop limit 64; IPv4 header checksum recomputed), UDP ports (IPv4: UDP checksum zero; IPv6:
 * UDP checksum recomputed over the pseudo-header and the whole datagram, as IPv6 requires
 * one). IPv4 and IPv6 share one table: addresses are 16 bytes (IPv4 mapped as ::ffff:a.b.c.d);
 * the key and the peer are of the family packets arrive in, and an entry's `family` is the one
 * of the header the program writes (destination and source address). When the two differ (a
 * leg bridging IPv4 and IPv6) bpf_xdp_adjust_head grows or shrinks the packet by 20 bytes in
 * front, so the UDP header and payload stay where they are, and the program writes a whole new
 * IP header (IPv4: DF, ID 0, the TOS from the IPv6 traffic class; IPv6: the traffic class from
 * the TOS, flow label 0). The RTP payload is
 * decrypted with the receiving leg's cipher and encrypted with the sending leg's (XOR, RC4;
 * byte layout in docs/media.md). A packet from any other source than the latched peer is
 * dropped (XDP_DROP) and counted (per port: stats.dropped; verdict R_FOREIGN_SOURCE). Anything
 * else goes up the stack (XDP_PASS) to the userspace relay socket: unknown (address, port),
 * VLAN, IPv4 options, IPv6 extension headers (any next header but UDP), fragments, UDP
 * datagrams over IPv6 longer than MAX_UDP6, latching pending (or no peer known), unknown next hop,
 * non-RTP where a cipher applies, and, only on legs with a cipher, an RTP payload longer than
 * MAX_PAYLOAD (legs without a cipher relay any length).
 *
 * RC4: the per-packet key is key || SSRC || seq, so the first keylen steps of the key schedule
 * depend only on the session key. The loader stores in the entry the RC4 state after the first
 * (keylen & ~7) steps (rc4 state, rc4_j); per packet the program copies it (32 u64 moves),
 * builds the key schedule's key stream for positions up to 255 with u64 moves, runs the
 * remaining steps 8 at a time and the PRGA 8 bytes at a time. Byte-identical to plain RC4.
 *
 * Owns: the layout of `sessions`, `stats` and `verdicts` (mirrored by daemons/sipedge/media/xdp.py,
 * the only code that reads or writes them).
 *
 * The macros PIN_DIR and MAX_SESSIONS are given by the loader (-D).
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/udp.h>

#define MAX_PAYLOAD 1400
#define MAX_UDP6 1480 /* longest UDP datagram over IPv6 checksummed here (1500-byte MTU) */
#define MAX_KEY 64
/* map key fields hold the key repeated to KEY_WIN bytes (pat[m] = key[m % keylen]): any
 * offset below MAX_KEY can be read as one u64 */
#define KEY_WIN (MAX_KEY + 8)
#define BUF_SIZE 2048 /* power of two >= MAX_PAYLOAD: indexes are masked with BUF_SIZE - 1 */
/* hide a value from clang so it keeps the masking the verifier needs */
#define OPAQUE(v) asm volatile("" : "+r"(v))
#define FIB_TTL_NS 1000000000ULL /* a cached next hop is looked up again after 1 s */
#define F_LATCH 1 /* peer not latched yet: userspace sees the first packet */
#define F_RTCP 2
#define M_NONE 0
#define M_XOR 1
#define M_RC4 2

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* addresses: IPv6 as is, IPv4 as ::ffff:a.b.c.d (the IPv4 address in word 3) */
struct relay_key {
    __be32 addr[4]; /* local address (mediad's bind address; never 0) */
    __be16 port; /* local port */
    __u16 pad;
};

struct relay_entry {
    __be32 dst_addr[4]; /* peer of the other leg; 0 = unknown (pass) */
    __be32 src_addr[4]; /* our source address: the bind address of dst_addr's family */
    __be32 peer_addr[4]; /* expected source of packets to this port (ignored with F_LATCH); 0 = unknown (pass) */
    __be16 dst_port;
    __be16 src_port; /* the other leg's relay port */
    __be16 peer_port; /* expected source port */
    __u8 flags;
    __u8 in_mode; /* cipher of the receiving leg (decrypt) */
    __u8 out_mode; /* cipher of the sending leg (encrypt) */
    __u8 in_keylen;
    __u8 out_keylen;
    __u8 in_rc4_j; /* RC4: j after the first (keylen & ~7) key-schedule steps */
    __u8 out_rc4_j;
    __u8 family; /* 4 or 6: of dst_addr and src_addr, the header written (peer_addr and the
                  * key are of the packets' arrival family, 4 <-> 6 when the two differ) */
    __u8 pad[2];
    __u32 slot; /* index of this port's counters in `stats` (userspace allocates it) */
    __u32 pad2; /* the key windows start 8-byte aligned */
    __u8 in_key[KEY_WIN]; /* key repeated to KEY_WIN bytes (the loader expands it) */
    __u8 out_key[KEY_WIN];
    __u8 in_rc4[256]; /* RC4: S after the first (keylen & ~7) key-schedule steps (the loader) */
    __u8 out_rc4[256];
};

struct relay_stats {
    __u64 packets;
    __u64 bytes;
    __u64 last_seen; /* bpf_ktime_get_coarse_ns (CLOCK_MONOTONIC base) */
    __u64 dropped; /* packets from another source than the latched peer (XDP_DROP) */
    /* this CPU's cached bpf_fib_lookup answer for this port: valid for FIB_TTL_NS and only
     * for the same destination, source, ingress interface and TOS, and packets no longer
     * than the one it was looked up for (the MTU check); all zero = none */
    __u64 fib_time;
    __be32 fib_dst[4];
    __be32 fib_src[4];
    __u32 fib_in_ifindex;
    __u32 fib_out_ifindex;
    __u16 fib_max_len;
    __u8 fib_tos;
    __u8 fib_pad;
    __u8 fib_dmac[ETH_ALEN];
    __u8 fib_smac[ETH_ALEN];
};

/* the RC4 key-schedule key stream kx[i] = K[i % klen] (K = key || SSRC || seq): built for
 * i < 256 from u64 copies starting at klen (masked to < 128 for the verifier), up to
 * klen + 256 bytes; the spare rounds of the key schedule read up to 512 + 8 */
#define KX_SIZE (512 + 8)

struct scratch {
    __u32 len; /* payload length; loops re-read it so the verifier never narrows a live register */
    __u32 ulen; /* UDP length (IPv6 checksum), re-read the same way */
    __u32 out6; /* the packet leaves over IPv6: read after the cipher, not kept in a register
                 * (one live across the cipher loops would double the verifier's states) */
    __u32 pad;
    __u8 s[512 + 8]; /* RC4 state in s[0..256); the rest absorbs the key schedule's spare rounds */
    __u8 kx[KX_SIZE];
    __u8 buf[BUF_SIZE];
};

/* no preallocation: memory follows the live entries (the loader sizes max_entries from the
 * port range) */
BPF_TABLE_PINNED("hash", struct relay_key, struct relay_entry, sessions, MAX_SESSIONS,
                 PIN_DIR "/sessions", BPF_F_NO_PREALLOC);
/* per-port counters, indexed by relay_entry.slot: one array lookup, no atomics */
BPF_TABLE_PINNED("percpu_array", __u32, struct relay_stats, stats, MAX_SESSIONS,
                 PIN_DIR "/stats");
BPF_PERCPU_ARRAY(scratch_map, struct scratch, 1);
/* why packets went up the stack, were relayed or dropped: index = R_* (xdp.py names them) */
BPF_PERCPU_ARRAY(verdicts, __u64, 16);
#define R_RELAYED 0
#define R_NOT_UDP 1
#define R_NO_SESSION 2
#define R_LATCH 3
#define R_BAD_LEN 4
#define R_NOT_RTP 5
#define R_FIB 6
#define R_DROP 7
#define R_FOREIGN_SOURCE 8
#define R_IPV6_EXT 9

static __always_inline int verdict(int reason, int action)
{
    int idx = reason;
    __u64 *c = verdicts.lookup(&idx);
    if (c)
        *c += 1;
    return action;
}

/* the Internet checksum of a sum of native u32 words (RFC 1071: the one's complement sum does
 * not depend on byte order, so the result is stored as is) */
static __always_inline __u16 csum_fold(__u64 sum)
{
    sum = (sum & 0xffffffff) + (sum >> 32);
    sum = (sum & 0xffffffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (__u16)~sum;
}

static __always_inline void xor_buf(struct scratch *sc, __u8 *pat, __u32 keylen)
{
    /*
     * 8 bytes at a time: the key bytes for payload bytes i..i+7 are pat[o..o+7], o = i % keylen.
     * XOR is periodic in any multiple of keylen, so a period p >= 8 (keylen rounded up to a
     * multiple >= 8; at most 64) lets o advance by 8 with one conditional subtraction, done
     * without a branch. The last word may run past the payload: the bytes beyond `len` are
     * scratch garbage that bpf_xdp_store_bytes never writes back.
     */
    __u32 p = keylen * ((keylen + 7) / keylen);
    __s64 o = 0;
    for (__u32 w = 0; w < MAX_PAYLOAD / 8; w++) {
        __u32 i = w * 8;
        if (i >= *(volatile __u32 *)&sc->len)
            break;
        OPAQUE(i);
        __u32 oo = o;
        *(__u64 *)&sc->buf[i & (BUF_SIZE - 8)] ^= *(__u64 *)&pat[oo & (MAX_KEY - 1)];
        __s64 d = o + 8 - (__s64)p; /* o + 8 < 2p */
        __s64 m = d >> 63; /* all ones when d < 0: keep o + 8 */
        OPAQUE(m); /* else clang makes it a select, i.e. a branch, i.e. 2^n verifier paths */
        o = d + ((__s64)p & m);
    }
}

/*
 * XOR in place in the packet (no copy to scratch): same u64 scheme as xor_buf, then a byte
 * tail. The payload length is re-read from sc->len and the packet pointers are re-derived
 * from ctx after the word loop, so every exit of a loop reaches the same verifier state (no
 * narrowed register stays live) and the states prune instead of multiplying.
 */
static __always_inline void xor_pkt(struct xdp_md *ctx, struct scratch *sc, __u32 pay_off,
                                    __u8 *pat, __u32 keylen)
{
    if (keylen == 0 || keylen > MAX_KEY)
        return;
    void *data_end = (void *)(long)ctx->data_end;
    OPAQUE(pay_off);
    pay_off &= 2047;
    __u8 *pay = (void *)(long)ctx->data + pay_off;
    __u32 p = keylen * ((keylen + 7) / keylen);
    __s64 o = 0;
    for (__u32 w = 0; w < MAX_PAYLOAD / 8; w++) {
        __u32 i = w * 8;
        if (i + 8 > *(volatile __u32 *)&sc->len)
            break;
        OPAQUE(i);
        __u64 *q = (void *)(pay + (i & (BUF_SIZE - 8)));
        if ((void *)(q + 1) > data_end)
            break;
        __u32 oo = o;
        *q ^= *(__u64 *)&pat[oo & (MAX_KEY - 1)];
        __s64 d = o + 8 - (__s64)p;
        __s64 m = d >> 63;
        OPAQUE(m);
        o = d + ((__s64)p & m);
    }
    __u32 base = *(volatile __u32 *)&sc->len & ~7U;
    __u32 oo = (base % keylen) & (MAX_KEY - 1);
    __u8 *tail = (void *)(long)ctx->data + ((pay_off + base) & 4095);
#pragma unroll
    for (__u32 t = 0; t < 7; t++) {
        if (base + t >= *(volatile __u32 *)&sc->len)
            break;
        __u8 *b = tail + t;
        if ((void *)(b + 1) > data_end)
            break;
        *b ^= pat[oo + t];
    }
}

/*
 * RC4 keyed with key || SSRC || seq (rtp = the RTP header), XOR-ed into sc->buf[0..len).
 * `state`/`j0`: S and j after the first m = keylen & ~7 key-schedule steps (those read only
 * key bytes); the loader computes them (xdp.py rc4_prefix). Requires 2 <= keylen <= MAX_KEY.
 */
static __always_inline void rc4_buf(struct scratch *sc, __u8 *key, __u32 keylen, __u8 *state,
                                    __u32 j0, __u8 *rtp)
{
    __u8 *s = sc->s;
    __u8 *kx = sc->kx;
#pragma unroll
    for (__u32 w = 0; w < 256 / 8; w++)
        *(__u64 *)&s[w * 8] = *(__u64 *)&state[w * 8];

    /* kx[0..keylen) = key (from the key window, 9 words), then SSRC and seq: K's first period */
#pragma unroll
    for (__u32 w = 0; w < KEY_WIN / 8; w++)
        *(__u64 *)&kx[w * 8] = *(__u64 *)&key[w * 8];
    __u32 kl = keylen;
    OPAQUE(kl);
    kl &= 127;
    __u8 *d = kx + kl;
    d[0] = rtp[8];
    d[1] = rtp[9];
    d[2] = rtp[10];
    d[3] = rtp[11];
    d[4] = rtp[2];
    d[5] = rtp[3];
    /* K is periodic in klen (>= 8 as keylen >= 2), so kx[klen + x] = kx[x] copied forward 8
     * bytes at a time reads only bytes already final */
    __u32 klen = kl + 6;
    OPAQUE(klen);
    klen &= 127;
    __u8 *e = kx + klen;
#pragma unroll
    for (__u32 w = 0; w < 256 / 8; w++)
        *(__u64 *)&e[w * 8] = *(__u64 *)&kx[w * 8];

    /* the remaining key-schedule steps, from m (a multiple of 8) to 255, 8 per round. Always
     * 32 rounds (no exit that depends on the key length: the verifier explores one path);
     * the last m / 8 rounds have i >= 256 and work on the spare half s[256..512) (off = 256
     * for both indexes), so they never touch S */
    __u32 j = j0 & 255;
    __u32 m = keylen & ~7U;
    for (__u32 r = 0; r < 256 / 8; r++) {
        __u32 i = m + r * 8;
        OPAQUE(i);
        i &= 511 & ~7U;
        __u8 *si = s + i;
        __u8 *sj = s + (i & 256);
        __u8 *ki = kx + i;
#pragma unroll
        for (__u32 t = 0; t < 8; t++) {
            __u8 x = si[t];
            j = (j + x + ki[t]) & 255;
            si[t] = sj[j];
            sj[j] = x;
        }
    }

    /* PRGA, 8 bytes of key stream per round XOR-ed as one u64; the last word may run past
     * len: those scratch bytes are never stored back */
    __u32 b = 0;
    for (__u32 w = 0; w < MAX_PAYLOAD / 8 + 1; w++) {
        __u32 o = w * 8;
        if (o >= *(volatile __u32 *)&sc->len)
            break;
        OPAQUE(o);
        __u64 ks = 0;
        __u8 *kb = (__u8 *)&ks;
        __u8 *sa = s + (o & 248); /* a = o + 1 + t for t < 7: sa[t + 1] */
#pragma unroll
        for (__u32 t = 0; t < 8; t++) {
            __u8 *pa = t < 7 ? sa + t + 1 : s + ((o + 8) & 248);
            __u8 x = *pa;
            b = (b + x) & 255;
            __u8 y = s[b];
            *pa = y;
            s[b] = x;
            kb[t] = s[(x + y) & 255];
        }
        *(__u64 *)&sc->buf[o & (BUF_SIZE - 8)] ^= ks;
    }
}

static __always_inline void apply(struct scratch *sc, __u8 mode, __u8 *key, __u8 keylen,
                                  __u8 *state, __u8 j0, __u8 *rtp)
{
    __u32 kl = keylen;
    if (kl == 0 || kl > MAX_KEY)
        return;
    if (mode == M_XOR)
        xor_buf(sc, key, kl);
    else if (mode == M_RC4 && kl >= 2) /* the loader accepts RC4 keys of 5-64 bytes */
        rc4_buf(sc, key, kl, state, j0, rtp);
}

static __always_inline int addr_eq(const __be32 *a, const __be32 *b)
{
    return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3])) == 0;
}

static __always_inline void addr_copy(__be32 *to, const __be32 *from)
{
    to[0] = from[0];
    to[1] = from[1];
    to[2] = from[2];
    to[3] = from[3];
}

/* 0 = unknown: the IPv4 word of a mapped address, or all 16 bytes of an IPv6 one */
static __always_inline int addr_zero(const __be32 *a, const int v6)
{
    if (v6)
        return (a[0] | a[1] | a[2] | a[3]) == 0;
    return a[3] == 0;
}

/* IPv6 extension headers (RFC 8200 4.1, RFC 5533, RFC 7401): not parsed, passed up */
static __always_inline int ipv6_ext(__u8 nh)
{
    return nh == 0 || nh == 43 || nh == 44 || nh == 50 || nh == 51 || nh == 60 || nh == 135 ||
           nh == 139 || nh == 140 || nh == 253 || nh == 254;
}

/*
 * The UDP checksum of an IPv6 packet written anew (RFC 8200 8.1): pseudo-header (source,
 * destination, UDP length, next header 17) and the whole datagram with the checksum field
 * zero, summed as native u32 halves of u64 words (the one's complement sum does not depend on
 * byte order, RFC 1071), the tail bytes in a zeroed word. sc->ulen is the UDP length
 * (8..MAX_UDP6, checked by the caller against data_end). Returns -1 when the packet is
 * shorter than that (never, after the caller's check; the verifier needs the test).
 */
static __always_inline int udp6_checksum(struct xdp_md *ctx, struct scratch *sc)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
    if ((void *)(ip6 + 1) > data_end)
        return -1;
    struct udphdr *udp = (void *)(ip6 + 1);
    if ((void *)(udp + 1) > data_end)
        return -1;
    udp->check = 0;
    __u64 sum = 0;
    __u32 *sa = (__u32 *)&ip6->saddr, *da = (__u32 *)&ip6->daddr;
#pragma unroll
    for (int w = 0; w < 4; w++)
        sum += (__u64)sa[w] + da[w];
    sum += bpf_htonl(*(volatile __u32 *)&sc->ulen & 0xffff);
    sum += bpf_htonl(IPPROTO_UDP);
    __u8 *p = (void *)udp;
    for (__u32 w = 0; w < MAX_UDP6 / 8; w++) {
        __u32 i = w * 8;
        if (i + 8 > *(volatile __u32 *)&sc->ulen)
            break;
        OPAQUE(i);
        __u64 *q = (void *)(p + (i & (BUF_SIZE - 8)));
        if ((void *)(q + 1) > data_end)
            return -1;
        __u64 v = *q;
        sum += (v & 0xffffffff) + (v >> 32);
    }
    __u32 base = *(volatile __u32 *)&sc->ulen & ~7U;
    __u8 *tail = p + (base & (BUF_SIZE - 8));
    __u64 last = 0;
#pragma unroll
    for (__u32 t = 0; t < 7; t++) {
        if (base + t >= *(volatile __u32 *)&sc->ulen)
            break;
        __u8 *b = tail + t;
        if ((void *)(b + 1) > data_end)
            return -1;
        last |= (__u64)*b << (8 * t);
    }
    sum += (last & 0xffffffff) + (last >> 32);
    __u16 check = csum_fold(sum);
    udp->check = check ? check : 0xffff; /* 0 means "no checksum", forbidden over IPv6 */
    return 0;
}

/* one packet in over IPv4 (v6 = 0) or IPv6 (v6 = 1), out over the entry's family: one copy of
 * the code for the four combinations (the verifier's budget of 1,000,000 processed
 * instructions is what binds: docs/performance.md, "XDP program size and load time") */
static __always_inline int relay(struct xdp_md *ctx, int v6)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return verdict(R_NOT_UDP, XDP_PASS);
    struct iphdr *ip = (void *)(eth + 1);
    struct ipv6hdr *ip6 = (void *)(eth + 1);
    struct udphdr *udp;
    struct relay_key key = {};
    __be32 src_ip[4] = {};
    __u8 tos;
    if (v6) {
        if ((void *)(ip6 + 1) > data_end)
            return verdict(R_NOT_UDP, XDP_PASS);
        if (ip6->nexthdr != IPPROTO_UDP)
            return verdict(ipv6_ext(ip6->nexthdr) ? R_IPV6_EXT : R_NOT_UDP, XDP_PASS);
        udp = (void *)(ip6 + 1);
        addr_copy(key.addr, (__be32 *)&ip6->daddr);
        addr_copy(src_ip, (__be32 *)&ip6->saddr);
        tos = (ntohl(*(__be32 *)ip6) >> 20) & 0xff; /* traffic class */
    } else {
        if ((void *)(ip + 1) > data_end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
            return verdict(R_NOT_UDP, XDP_PASS);
        if (ip->frag_off & htons(0x3fff)) /* MF or offset: a fragment */
            return verdict(R_NOT_UDP, XDP_PASS);
        udp = (void *)(ip + 1);
        key.addr[2] = htonl(0xffff);
        key.addr[3] = ip->daddr;
        src_ip[2] = htonl(0xffff);
        src_ip[3] = ip->saddr;
        tos = ip->tos;
    }
    if ((void *)(udp + 1) > data_end)
        return XDP_PASS;

    /* exact (destination address, port): no wildcard address */
    key.port = udp->dest;
    struct relay_entry *e = sessions.lookup(&key);
    if (!e)
        return verdict(R_NO_SESSION, XDP_PASS);
    int out6 = e->family == 6; /* the header written: 4 <-> 6 when out6 != v6 */
    if ((e->flags & F_LATCH) || addr_zero(e->peer_addr, v6) || addr_zero(e->dst_addr, out6) ||
        e->dst_port == 0)
        return verdict(R_LATCH, XDP_PASS);
    __u32 slot = e->slot;
    struct relay_stats *st = stats.lookup(&slot); /* counters and next-hop cache */
    if (!st) /* a slot beyond the array: never (userspace allocates below MAX_SESSIONS) */
        return verdict(R_LATCH, XDP_PASS);
    /* strict source: only the latched peer's (address, port) */
    if (!addr_eq(src_ip, e->peer_addr) || udp->source != e->peer_port) {
        st->dropped += 1;
        return verdict(R_FOREIGN_SOURCE, XDP_DROP);
    }

    /* a byte swap's result is unbounded to the 6.1 verifier: restate the 16-bit bound where
     * clang cannot drop it as redundant */
    __u32 ip_len = v6 ? ntohs(ip6->payload_len) : ntohs(ip->tot_len);
    __u32 udp_len = ntohs(udp->len);
    OPAQUE(ip_len);
    OPAQUE(udp_len);
    ip_len &= 0xffff;
    udp_len &= 0xffff;
    if (v6) {
        /* payload_len counts the UDP datagram (no extension header); ip_len = whole packet */
        if (udp_len < 8 || ip_len != udp_len)
            return verdict(R_BAD_LEN, XDP_PASS);
        ip_len = udp_len + sizeof(struct ipv6hdr);
    } else if (udp_len < 8 || ip_len != udp_len + 20) {
        return verdict(R_BAD_LEN, XDP_PASS);
    }
    if ((v6 | out6) && udp_len > MAX_UDP6) /* in or out over IPv6: the checksum's bound */
        return verdict(R_BAD_LEN, XDP_PASS);
    if ((void *)eth + sizeof(*eth) + ip_len > data_end)
        return verdict(R_BAD_LEN, XDP_PASS);

    __u8 in_mode = e->in_mode, out_mode = e->out_mode;
    int crypt = !(e->flags & F_RTCP) && (in_mode != M_NONE || out_mode != M_NONE);
    __u8 rtp[12] = {};
    __u32 pay_off = 0, n = 0;
    if (crypt) {
        __u8 *r = (void *)(udp + 1);
        if ((void *)(r + 12) > data_end || udp_len < 20)
            return verdict(R_NOT_RTP, XDP_PASS);
        if ((r[0] >> 6) != 2)
            return verdict(R_NOT_RTP, XDP_PASS);
        __builtin_memcpy(rtp, r, 12);
        __u32 off = 12 + 4 * (r[0] & 0x0f);
        if (r[0] & 0x10) {
            __u8 *x = r + (off & 127);
            if ((void *)(x + 4) > data_end)
                return verdict(R_NOT_RTP, XDP_PASS);
            off += 4 + 4 * (((__u32)x[2] << 8) | x[3]);
        }
        __u32 rtp_len = udp_len - 8;
        if (off > rtp_len)
            return verdict(R_NOT_RTP, XDP_PASS);
        n = rtp_len - off;
        if (n > MAX_PAYLOAD)
            return verdict(R_BAD_LEN, XDP_PASS);
        pay_off = sizeof(*udp) + off; /* from the UDP header, which never moves */
    }

    __be32 saddr[4], daddr[4];
    addr_copy(saddr, e->src_addr);
    addr_copy(daddr, e->dst_addr);
    __u32 out_len = udp_len + (out6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr));
    __u64 now = bpf_ktime_get_coarse_ns(); /* CLOCK_MONOTONIC_COARSE: a tick is enough */
    __u32 in_ifindex = ctx->ingress_ifindex, out_ifindex;
    __u8 dmac[ETH_ALEN], smac[ETH_ALEN];
    if (st->fib_time && now - st->fib_time < FIB_TTL_NS && addr_eq(st->fib_dst, daddr) &&
        addr_eq(st->fib_src, saddr) && st->fib_in_ifindex == in_ifindex && st->fib_tos == tos &&
        out_len <= st->fib_max_len) {
        out_ifindex = st->fib_out_ifindex;
        __builtin_memcpy(dmac, st->fib_dmac, ETH_ALEN);
        __builtin_memcpy(smac, st->fib_smac, ETH_ALEN);
    } else {
        struct bpf_fib_lookup fib = {};
        fib.l4_protocol = IPPROTO_UDP;
        fib.tot_len = out_len; /* the MTU check, on the packet as it leaves */
        fib.ifindex = in_ifindex;
        if (out6) {
            fib.family = AF_INET6;
            addr_copy(fib.ipv6_src, saddr);
            addr_copy(fib.ipv6_dst, daddr);
        } else {
            fib.family = AF_INET;
            fib.tos = tos;
            fib.ipv4_src = saddr[3];
            fib.ipv4_dst = daddr[3];
        }
        if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
            return verdict(R_FIB, XDP_PASS); /* the stack resolves the neighbour */
        out_ifindex = fib.ifindex;
        __builtin_memcpy(dmac, fib.dmac, ETH_ALEN);
        __builtin_memcpy(smac, fib.smac, ETH_ALEN);
        st->fib_time = now;
        addr_copy(st->fib_dst, daddr);
        addr_copy(st->fib_src, saddr);
        st->fib_in_ifindex = in_ifindex;
        st->fib_out_ifindex = out_ifindex;
        st->fib_max_len = out_len;
        st->fib_tos = tos;
        __builtin_memcpy(st->fib_dmac, dmac, ETH_ALEN);
        __builtin_memcpy(st->fib_smac, smac, ETH_ALEN);
    }

    /* headers: 4 <-> 6 moves the packet's start by the 20 bytes the IP header grows or shrinks,
     * so the UDP header and payload stay in place; every pointer is derived anew */
    int grow = (out6 - v6) * 20;
    if (grow && bpf_xdp_adjust_head(ctx, -grow))
        return verdict(R_DROP, XDP_DROP);
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;
    eth = data;
    ip = (void *)(eth + 1);
    ip6 = (void *)(eth + 1);
    if (out6) {
        udp = (void *)(ip6 + 1);
        if ((void *)(udp + 1) > data_end)
            return verdict(R_DROP, XDP_DROP);
        if (grow) {
            *(__be32 *)ip6 = htonl(0x60000000 | (__u32)tos << 20); /* version, class, flow 0 */
            ip6->payload_len = htons(udp_len);
            ip6->nexthdr = IPPROTO_UDP;
        }
        addr_copy((__be32 *)&ip6->saddr, saddr);
        addr_copy((__be32 *)&ip6->daddr, daddr);
        ip6->hop_limit = 64;
        eth->h_proto = htons(ETH_P_IPV6);
    } else {
        udp = (void *)(ip + 1);
        if ((void *)(udp + 1) > data_end)
            return verdict(R_DROP, XDP_DROP);
        if (grow) {
            *(__be16 *)ip = htons(0x4500 | tos); /* version 4, IHL 5, TOS */
            ip->tot_len = htons(udp_len + sizeof(struct iphdr));
            ip->id = 0;
            ip->frag_off = htons(0x4000); /* DF: an atomic datagram (RFC 6864) */
            ip->protocol = IPPROTO_UDP;
        }
        ip->saddr = saddr[3];
        ip->daddr = daddr[3];
        ip->ttl = 64;
        ip->check = 0;
        __u32 *w = (void *)ip;
        ip->check = csum_fold((__u64)w[0] + w[1] + w[2] + w[3] + w[4]);
        eth->h_proto = htons(ETH_P_IP);
    }
    __builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
    __builtin_memcpy(eth->h_source, smac, ETH_ALEN);
    udp->source = e->src_port;
    udp->dest = e->dst_port;
    udp->check = 0;
    pay_off += sizeof(*eth) + (out6 ? sizeof(*ip6) : sizeof(*ip));

    /* the payload, at its offset in the packet as it leaves */
    int zero = 0;
    struct scratch *sc = 0;
    if (out6 || (crypt && n > 0)) {
        sc = scratch_map.lookup(&zero);
        if (!sc)
            return verdict(R_DROP, XDP_DROP);
        sc->out6 = out6;
    }
    if (sc && crypt && n > 0) {
        if (n > MAX_PAYLOAD || n == 0)
            return verdict(R_DROP, XDP_DROP);
        sc->len = n;
        if (pay_off < 2048 && in_mode != M_RC4 && out_mode != M_RC4) {
            /* XOR only: in place, no copy (legs with different XOR keys: twice) */
            if (in_mode == M_XOR)
                xor_pkt(ctx, sc, pay_off, e->in_key, e->in_keylen);
            if (out_mode == M_XOR)
                xor_pkt(ctx, sc, pay_off, e->out_key, e->out_keylen);
        } else {
            /* RC4 on either leg: copy to scratch, transform, copy back */
            /* the size argument must be provably 1..sizeof(buf) where the call is made */
            __u32 len = n;
            OPAQUE(len);
            len = ((len - 1) & (BUF_SIZE - 1)) + 1;
            if (bpf_xdp_load_bytes(ctx, pay_off, sc->buf, len) < 0)
                return verdict(R_DROP, XDP_DROP);
            /* the loader leaves both modes none when the two legs share one cipher */
            apply(sc, in_mode, e->in_key, e->in_keylen, e->in_rc4, e->in_rc4_j, rtp);
            apply(sc, out_mode, e->out_key, e->out_keylen, e->out_rc4, e->out_rc4_j, rtp);
            if (bpf_xdp_store_bytes(ctx, pay_off, sc->buf, len) < 0)
                return verdict(R_DROP, XDP_DROP);
        }
    }

    if (sc && *(volatile __u32 *)&sc->out6) {
        sc->ulen = udp_len;
        if (udp6_checksum(ctx, sc) < 0)
            return verdict(R_DROP, XDP_DROP);
    }

    st->packets += 1;
    st->bytes += udp_len - 8;
    st->last_seen = now;

    if (out_ifindex == in_ifindex)
        return verdict(R_RELAYED, XDP_TX);
    return verdict(R_RELAYED, bpf_redirect(out_ifindex, 0));
}

int xdp_media_relay(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return verdict(R_NOT_UDP, XDP_PASS);
    int v6 = eth->h_proto == htons(ETH_P_IPV6);
    if (!v6 && eth->h_proto != htons(ETH_P_IP))
        return verdict(R_NOT_UDP, XDP_PASS);
    OPAQUE(v6); /* a runtime value: clang must not clone relay() per family */
    return relay(ctx, v6);
}
