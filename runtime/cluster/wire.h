/* Encoding of what ranks send each other (proto/brt.proto, protobuf-c), checked on receipt:
 * a message of another wire version, or one that does not parse, or whose sizes disagree, is an
 * error naming the sender; never trusted. */
#ifndef BRT_WIRE_H
#define BRT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/transport.h"
#include "engine/step.h"

struct ProtobufCMessage;

#define BRT_WIRE_VERSION 3 /* 3: state-cache ops and reports */

brt_status brt_wire_pack_mb(const brt_microbatch *mb, int32_t hidden_dim, void **buf, size_t *len, brt_err *err);
/* Decodes into a new micro-batch (free with brt_wire_free_mb). */
brt_status brt_wire_unpack_mb(const void *buf, size_t len, int32_t src, brt_microbatch **mb, int32_t *hidden_dim,
                              brt_err *err);
void brt_wire_free_mb(brt_microbatch *mb);

/* Pack a protobuf message and send it (with an optional payload, owned by the transport). */
brt_status brt_wire_send_pb(brt_transport *tr, int32_t dst, int32_t tag, const struct ProtobufCMessage *m, void *payload,
                            size_t payload_len, brt_err *err);

/* Results of a micro-batch; full logits rows travel in the payload. */
brt_status brt_wire_pack_results(uint64_t mb_id, int32_t rank, const brt_step_result *res, int32_t n,
                                 const brt_stage_stat *stats, int32_t n_stats, const brt_cache_report *reports,
                                 int32_t n_reports, void **hdr, size_t *hdr_len, void **payload, size_t *payload_len,
                                 brt_err *err);
/* stats: up to BRT_MB_STATS figures of the pipeline's stages (*n_stats of them); reports: the
 * stages' state-cache reports (*reports malloc'ed, may be NULL when none). */
brt_status brt_wire_unpack_results(const void *hdr, size_t hdr_len, const void *payload, size_t payload_len,
                                   int32_t src, uint64_t *mb_id, brt_step_result **res, int32_t *n,
                                   brt_stage_stat *stats, int32_t *n_stats, brt_cache_report **reports,
                                   int32_t *n_reports, brt_err *err);
/* Append a report to a micro-batch; -1 out of memory. */
int brt_mb_add_report(brt_microbatch *mb, const brt_cache_report *r);

#endif
