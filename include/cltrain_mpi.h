/* cltrain_mpi.h - optional companion library (libcltrain_mpi): data-parallel training of one clt_graph per MPI
 * rank: broadcast of the state from one rank, bucketed averaging of gradients, averaging of batch-norm running
 * statistics, and an error agreement so that a failure on one rank ends every rank instead of hanging them.
 *
 * Built when meson finds MPI (option -Dmpi=auto|enabled|disabled); link with libcltrain_mpi, libcltrain and MPI.
 * It uses only the public seam of <cltrain.h> (clt_graph_grad_buffer and friends): an application that wants
 * another communicator (NCCL, RCCL, its own) does what this file does with that.
 *
 * A step on every rank:
 *     clt_graph_forward(g, 1);  clt_graph_backward(g, loss);     // local batch of b_r rows, mean loss
 *     clt_mpi_allreduce_grads(d, (float)b_r / B);                // gradient of the global mean over B rows
 *     clt_graph_step(g, lr);                                     // identical update on every rank
 * With the weight b_r/B (local rows over global rows) the reduced gradient is exactly that of the mean loss of
 * the whole global batch, also when B does not divide evenly over the ranks; with 1/size it is the plain mean.
 * The update is then the same on every rank, so the parameters stay identical (up to nothing: every rank adds
 * the same reduced floats) once clt_mpi_broadcast made them equal at the start.
 *
 * Batch normalization: each rank normalizes with the statistics of its own local batch (no synchronized batch
 * norm), and the running statistics, which then drift apart, are averaged over the ranks by
 * clt_mpi_average_buffers, which an application calls before each evaluation and each checkpoint (the cltrain
 * tool does). The averaged running variance is the mean of the ranks' running variances (it leaves out the
 * spread of the ranks' means, small when the ranks' batches come from one shuffled order).
 *
 * Overlap: the graph enqueues the whole backward pass on its in-order queue and reports no per-node completion,
 * so the reduction cannot start before the backward finishes on the device. What overlaps is within the
 * reduction: the gradient arena is cut into buckets (default 4 MiB, at tensor boundaries, in backward order);
 * all device->host copies are enqueued at once, each bucket's MPI_Iallreduce starts as soon as its copy
 * completed (while later buckets are still being copied), and each reduced bucket is written back without the
 * host waiting for the write (the step enqueued after it runs in queue order). Host work between
 * clt_mpi_allreduce_begin and clt_mpi_allreduce_end (preparing the next batch) overlaps the copies.
 *
 * Memory: all staging (one host-mapped buffer, CL_MEM_ALLOC_HOST_PTR, the size of the largest arena; bucket
 * tables, requests) is allocated by clt_mpi_create; a step allocates nothing of its own (the OpenCL runtime
 * creates one event object per bucket and step for the copy's completion, released in the same call).
 *
 * Errors: every function returns 0 or a negative clt_status; the message is in clt_mpi_errmsg(d) (MPI errors
 * with MPI's error string). The library never prints, exits or aborts. MPI errors are returned, not fatal, on
 * the library's own duplicate of the communicator. A rank that fails must still take part in the next
 * clt_mpi_agree (or call MPI_Abort) so that the others do not wait forever in a collective.
 *
 * Threads: a clt_mpi is used by one thread at a time, the thread that uses its graph; MPI must be initialized
 * (MPI_Init, any thread level) before clt_mpi_create and finalized after clt_mpi_destroy. Every function other
 * than clt_mpi_destroy, clt_mpi_errmsg, clt_mpi_rank, clt_mpi_size and clt_mpi_get_stats is collective: every
 * rank of the communicator calls it, in the same order. */
#ifndef CLTRAIN_MPI_H
#define CLTRAIN_MPI_H

#include <mpi.h>
#include <stdint.h>

#include <cltrain.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct clt_mpi clt_mpi;

typedef struct clt_mpi_settings {
    size_t bucket_bytes; /* gradient bytes per MPI_Iallreduce (default 4 MiB; at least one tensor per bucket) */
} clt_mpi_settings;
CLT_API void clt_mpi_default_settings(clt_mpi_settings *s);

/* Sets up data-parallel training of the compiled training graph g over `comm` (duplicated: the application's
 * communicator is not changed) and allocates all staging. Collective. Like clt_context_create, *out is set even
 * on failure (NULL only when host memory ran out) so that clt_mpi_errmsg(*out) says why; the caller always
 * calls clt_mpi_destroy(*out). g must outlive d. Every rank must have built the same model (same arena sizes:
 * CLT_ERR_INVALID, naming both sizes, otherwise). */
CLT_API int clt_mpi_create(clt_graph *g, MPI_Comm comm, const clt_mpi_settings *s, clt_mpi **out);
/* Not collective; accepts NULL. Finishes the graph's queue first. */
CLT_API void clt_mpi_destroy(clt_mpi *d);
/* Message of the last failure ("" before any); never NULL, also for d == NULL. */
CLT_API const char *clt_mpi_errmsg(const clt_mpi *d);
CLT_API int clt_mpi_rank(const clt_mpi *d);
CLT_API int clt_mpi_size(const clt_mpi *d);

/* Copies rank `root`'s parameters, buffers (batch-norm statistics), optimizer slots and counters (steps,
 * passes) to every rank. Blocking; call once after compile (and after loading a checkpoint on `root`). */
CLT_API int clt_mpi_broadcast(clt_mpi *d, int root);
/* Replaces every rank's gradients by sum over ranks of (weight_r * gradient_r); weight_r is this rank's
 * weight (see the top of this file). Call after clt_graph_backward and before clt_graph_step. Equivalent to
 * clt_mpi_allreduce_begin followed by clt_mpi_allreduce_end. */
CLT_API int clt_mpi_allreduce_grads(clt_mpi *d, float weight);
/* The two halves: begin enqueues the device->host copies of all buckets and returns at once; end reduces the
 * buckets as their copies complete and enqueues the writes back. Between them the application may do host
 * work, but must not enqueue work that changes the gradients. */
CLT_API int clt_mpi_allreduce_begin(clt_mpi *d, float weight);
CLT_API int clt_mpi_allreduce_end(clt_mpi *d);
/* Averages the non-trainable buffers (batch-norm running mean and variance) over the ranks. Blocking. */
CLT_API int clt_mpi_average_buffers(clt_mpi *d);
/* Error agreement: every rank passes whether it failed (nonzero) since the last agreement; *nfailed (may be
 * NULL) receives how many ranks did, and *first_failed (may be NULL) the lowest failed rank (-1: none). Returns
 * 0 when the agreement itself worked, whatever the ranks reported. */
CLT_API int clt_mpi_agree(clt_mpi *d, int failed, int *nfailed, int *first_failed);

typedef struct clt_mpi_stats {
    uint64_t reductions;   /* clt_mpi_allreduce_end calls */
    double last_ms;        /* wall time of the last begin..end, host side */
    double total_ms;       /* sum of those: includes waiting for the device to finish the backward pass */
    double device_wait_ms; /* of total_ms: until the first bucket's copy completed (the backward pass running) */
    double comm_ms;        /* of total_ms: the rest, from the first gradients on the host to the last bucket
                            * reduced: copies, the reductions, and waiting for slower ranks */
    int buckets;           /* gradient buckets per reduction */
    size_t grad_bytes;     /* bytes reduced per reduction (the gradient arena) */
} clt_mpi_stats;
CLT_API int clt_mpi_get_stats(const clt_mpi *d, clt_mpi_stats *st);

#ifdef __cplusplus
}
#endif
#endif
