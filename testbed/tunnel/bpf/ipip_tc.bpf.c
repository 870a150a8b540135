// SPDX-License-Identifier: GPL-2.0
/* IP-in-IP (RFC 2003) in tc BPF, for kernels without the ipip module.
 *
 * Two cls_bpf programs in direct-action mode share the maps of one loaded object:
 *
 *   ipip_encap  tc ingress of a peer's twin device (`bt<ifname>`). The peer device
 *               (`ip-P`, the other end of the veth pair, possibly in a realm namespace)
 *               is where routes point; what leaves it arrives here, gets an outer IPv4
 *               header (protocol 4, local -> peer, inner TOS and DF copied, TTL 64,
 *               checksum) and is sent with bpf_redirect_neigh() out of the device of
 *               our route to the peer (looked up by the loader).
 *   ipip_decap  tc ingress of the public interface. IP-IP for our local address from a
 *               known peer (outer source) loses its outer header and is redirected to the
 *               twin, so it arrives on that peer's own device: the device still names the
 *               realm (claims 4, 6), exactly as with a TUN or a kernel ipip device.
 *               From an unknown source: dropped and counted. Outer fragments: passed to
 *               the stack and counted (the tunnel MTU keeps peers from making them).
 *
 * The tunnel MTU is the peer device's MTU (1480): the kernel answers oversized DF packets
 * routed there with ICMP "fragmentation needed" itself (RFC 2003 section 3.1).
 * Build: clang -O2 -g -target bpf -I/usr/include/$(gcc -dumpmachine) -c ipip_tc.bpf.c
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7) /* kernel >= 6.3; Debian 12's header lacks it */
#endif

#define OUTER_LEN 20
#define IP_DF 0x4000
#define IP_MF_OFFSET 0x3fff
#define OUTER_TTL 64

/* Peer seen from the encapsulating side, keyed by the twin's ifindex. */
struct tx_peer {
	__u32 local;		/* our public address, network order */
	__u32 remote;		/* the peer's public address, network order */
	__u32 out_ifindex;	/* the device of our route to the peer */
	__u32 pad;
	__u64 packets;		/* encapsulated and handed to the outer device */
	__u64 bytes;		/* inner bytes of those */
	__u64 non_ipv4;		/* not IPv4: cannot go into IP-IP */
	__u64 errors;		/* no room, no route to the peer */
};

/* Peer seen from the decapsulating side, keyed by its public address (network order). */
struct rx_peer {
	__u32 twin_ifindex;	/* redirect target: arrives on the peer device */
	__u8 dev_mac[6];	/* the peer device's MAC (destination after decap) */
	__u8 twin_mac[6];	/* source after decap */
	__u64 packets;		/* decapsulated and delivered */
	__u64 bytes;		/* inner bytes of those */
	__u64 malformed;	/* from this peer but the inner packet is not sane IPv4 */
	__u64 errors;		/* adjust_room refused */
};

enum { STAT_UNKNOWN_PEER, STAT_MALFORMED_OUTER, STAT_OUTER_FRAGMENTS, STAT_MAX };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct tx_peer);
} tx_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct rx_peer);
} rx_peers SEC(".maps");

/* [0]: our public address (network order); the decap side only takes IP-IP for it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} local_addr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &which);

	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline __u16 ip_checksum(struct iphdr *ip)
{
	__u16 *w = (__u16 *)ip;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < OUTER_LEN / 2; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

SEC("tc")
int ipip_encap(struct __sk_buff *skb)
{
	__u32 key = skb->ingress_ifindex;
	struct tx_peer *p = bpf_map_lookup_elem(&tx_peers, &key);
	struct iphdr inner, outer = {};
	__u32 len = skb->len;

	if (!p)
		return TC_ACT_OK; /* not one of our twins: leave it alone */
	if (skb->protocol != bpf_htons(ETH_P_IP) ||
	    bpf_skb_load_bytes(skb, ETH_HLEN, &inner, sizeof(inner)) < 0 || inner.version != 4) {
		__sync_fetch_and_add(&p->non_ipv4, 1);
		return TC_ACT_SHOT;
	}
	if (bpf_skb_adjust_room(skb, OUTER_LEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO)) {
		__sync_fetch_and_add(&p->errors, 1);
		return TC_ACT_SHOT;
	}
	outer.version = 4;
	outer.ihl = 5;
	outer.tos = inner.tos;			/* RFC 2003 3.1: copy TOS */
	outer.tot_len = bpf_htons((len - ETH_HLEN + OUTER_LEN) & 0xffff);
	outer.id = bpf_get_prandom_u32() & 0xffff;
	outer.frag_off = inner.frag_off & bpf_htons(IP_DF); /* RFC 2003 3.1: copy DF */
	outer.ttl = OUTER_TTL;
	outer.protocol = IPPROTO_IPIP;
	outer.saddr = p->local;
	outer.daddr = p->remote;
	outer.check = ip_checksum(&outer);
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &outer, sizeof(outer), 0) < 0) {
		__sync_fetch_and_add(&p->errors, 1);
		return TC_ACT_SHOT;
	}
	__sync_fetch_and_add(&p->packets, 1);
	__sync_fetch_and_add(&p->bytes, len - ETH_HLEN);
	/* The kernel picks the next hop on that device and resolves its neighbour. */
	return bpf_redirect_neigh(p->out_ifindex, NULL, 0, 0);
}

SEC("tc")
int ipip_decap(struct __sk_buff *skb)
{
	__u32 zero = 0, inner_len;
	__u32 *local = bpf_map_lookup_elem(&local_addr, &zero);
	struct iphdr outer, inner;
	struct rx_peer *p;
	__u32 hlen;

	if (skb->protocol != bpf_htons(ETH_P_IP) ||
	    bpf_skb_load_bytes(skb, ETH_HLEN, &outer, sizeof(outer)) < 0)
		return TC_ACT_OK;
	if (outer.protocol != IPPROTO_IPIP || !local || outer.daddr != *local)
		return TC_ACT_OK; /* not IP-IP for us */
	if (outer.version != 4 || outer.ihl < 5) {
		count(STAT_MALFORMED_OUTER);
		return TC_ACT_SHOT;
	}
	p = bpf_map_lookup_elem(&rx_peers, &outer.saddr);
	if (!p) {
		count(STAT_UNKNOWN_PEER);
		return TC_ACT_SHOT;
	}
	if (outer.frag_off & bpf_htons(IP_MF_OFFSET)) {
		count(STAT_OUTER_FRAGMENTS);
		return TC_ACT_OK;
	}
	hlen = outer.ihl * 4;
	if (hlen > 60 || bpf_skb_load_bytes(skb, ETH_HLEN + hlen, &inner, sizeof(inner)) < 0 ||
	    inner.version != 4 || inner.ihl < 5) {
		__sync_fetch_and_add(&p->malformed, 1);
		return TC_ACT_SHOT;
	}
	inner_len = bpf_ntohs(inner.tot_len);
	if (!skb->gso_segs && (inner_len < inner.ihl * 4 || inner_len + hlen + ETH_HLEN > skb->len)) {
		__sync_fetch_and_add(&p->malformed, 1);
		return TC_ACT_SHOT;
	}
	if (bpf_skb_adjust_room(skb, -(__s32)hlen, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_DECAP_L3_IPV4) &&
	    bpf_skb_adjust_room(skb, -(__s32)hlen, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO)) {
		__sync_fetch_and_add(&p->errors, 1);
		return TC_ACT_SHOT;
	}
	if (bpf_skb_store_bytes(skb, 0, p->dev_mac, 6, 0) < 0 ||
	    bpf_skb_store_bytes(skb, 6, p->twin_mac, 6, 0) < 0) {
		__sync_fetch_and_add(&p->errors, 1);
		return TC_ACT_SHOT;
	}
	__sync_fetch_and_add(&p->packets, 1);
	__sync_fetch_and_add(&p->bytes, skb->len - ETH_HLEN);
	return bpf_redirect(p->twin_ifindex, 0);
}

char _license[] SEC("license") = "GPL";
