/*
 * shim.h: one-line C wrappers around DPDK's static inline functions and macros.
 *
 * bindgen can only bind real symbols. Everything DPDK puts on the fast path
 * (rx/tx burst, mbuf alloc/free, mtod) is `static inline` or a macro, so it has
 * no symbol in the shared libraries. Each function below exists only to give
 * one of those a linkable name; none contains logic of its own.
 */
#ifndef RVS_SHIM_H
#define RVS_SHIM_H

#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_ring.h>
#include <rte_cycles.h>
#include <rte_dev.h>
#include <rte_bus_vdev.h>
#include <rte_flow.h>
#include <rte_pdump.h>

/* rte_errno is a per-lcore macro, not a variable. */
int rvs_rte_errno(void);

/* rte_eth_rx_burst / rte_eth_tx_burst are static inline. */
uint16_t rvs_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t rvs_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

/* mbuf allocation and freeing: static inline, and they touch the mempool's
 * per-lcore cache, so they stay in C. */
struct rte_mbuf *rvs_pktmbuf_alloc(struct rte_mempool *mp);
void rvs_pktmbuf_free(struct rte_mbuf *m);
void rvs_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int count);

/* mbuf field accessors and length adjustments. The packet path reads and
 * writes these fields in Rust (rvs-dpdk's mbuf.rs, from bindgen's rte_mbuf
 * layout) so they inline; these C versions are DPDK's own code and remain as
 * the reference rvs-dpdk's tests compare the Rust ones with. */
char *rvs_pktmbuf_mtod(struct rte_mbuf *m);
uint16_t rvs_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t rvs_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t rvs_pktmbuf_nb_segs(const struct rte_mbuf *m);
char *rvs_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *rvs_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
int rvs_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
char *rvs_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
uint16_t rvs_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t rvs_pktmbuf_tailroom(const struct rte_mbuf *m);
/* The pool an mbuf belongs to (for allocating siblings such as fragments). */
struct rte_mempool *rvs_pktmbuf_pool(struct rte_mbuf *m);

/* mempool occupancy: static inline. */
unsigned int rvs_mempool_avail_count(const struct rte_mempool *mp);

/* rte_lcore_id is a macro over per-lcore storage. */
unsigned int rvs_lcore_id(void);

/* TSC: static inline. */
uint64_t rvs_rdtsc(void);
uint64_t rvs_tsc_hz(void);

/* Offload bits DPDK defines with RTE_BIT64(), a function-like macro bindgen
 * cannot evaluate: the C compiler gives these enumerators DPDK's values. */
enum rvs_offload {
    RVS_ETH_RX_OFFLOAD_IPV4_CKSUM = RTE_ETH_RX_OFFLOAD_IPV4_CKSUM,
    RVS_ETH_RX_OFFLOAD_UDP_CKSUM = RTE_ETH_RX_OFFLOAD_UDP_CKSUM,
    RVS_ETH_RX_OFFLOAD_TCP_CKSUM = RTE_ETH_RX_OFFLOAD_TCP_CKSUM,
    RVS_ETH_TX_OFFLOAD_IPV4_CKSUM = RTE_ETH_TX_OFFLOAD_IPV4_CKSUM,
    RVS_ETH_TX_OFFLOAD_UDP_CKSUM = RTE_ETH_TX_OFFLOAD_UDP_CKSUM,
    RVS_ETH_TX_OFFLOAD_TCP_CKSUM = RTE_ETH_TX_OFFLOAD_TCP_CKSUM,
};

/* The default mbuf data room (RTE_MBUF_DEFAULT_BUF_SIZE is a macro expression). */
uint16_t rvs_mbuf_default_buf_size(void);

#endif
