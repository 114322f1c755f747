/* dist.h - data-parallel training in the cltrain tool (tools/dist.c): one process per rank under mpirun, built
 * with MPI (meson -Dmpi); without MPI, or started without mpirun, a single rank and every function a no-op. */
#ifndef CLT_TOOL_DIST_H
#define CLT_TOOL_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "cltrain.h"

extern int dist_rank, dist_size;
typedef struct clt_mpi dist_graph; /* 0 and 1 unless started by mpirun with more than one rank */

/* Starts MPI when the process was launched by mpirun (Open MPI, MPICH/PMI environment); ranks above 0 then
 * print nothing on stdout (their errors still go to stderr). Returns 0, or -1 with a message printed. */
int dist_init(int *argc, char ***argv);
/* Ends MPI with the process's exit status: a failure that the ranks did not agree on (one rank's error)
 * aborts the whole job (MPI_Abort) so that no rank waits for it; returns rc. */
int dist_exit(int rc);
/* The device this rank uses: with "a,b,c" the rank's own entry (an error, printed, if there are fewer entries
 * than ranks); otherwise, with several ranks, the (local rank)-th device among those matching the spec (all GPUs
 * when spec is NULL, else all devices), as its global index in buf. Returns NULL after printing an error. */
const char *dist_device(const char *spec, char *buf, size_t len);
/* This rank's share of `total` rows: the first total % size ranks take one more. */
void dist_split(int total, int *count, int *offset);
/* Error agreement: each rank passes why it must stop (0 no, 1 interrupted, 2 failed); returns the largest
 * reason over the ranks and in *first the lowest rank that gave it. After a nonzero answer every rank stops
 * together (dist_exit then ends MPI normally instead of aborting). */
int dist_agree(int why, int *first);
/* A failure that the ranks did not agree on: prints nothing more and ends the whole job (MPI_Abort) with rc,
 * so that no rank waits for this one. Does nothing with one rank, rc 0, or after an agreed stop. */
void dist_fail(int rc);
/* The step's hook between backward and update: agreement on this rank's status `st` (and Ctrl-C), then the
 * gradient reduction. Returns 0 to go on (also when st < 0: the caller reports its own error), 1 when a rank was
 * interrupted (every rank stops, no update), -1 when another rank failed or the reduction failed (printed). */
int dist_step(int st, int interrupted, dist_graph *d, int local_rows, int global_rows);
/* Splits the global batch B and the last partial batch (*tail rows) over the ranks; refuses (printed) a batch
 * that leaves a rank fewer than 2 images, and drops (noted on rank 0) a partial batch that would. */
int dist_plan(int B, int *tail, int *bl, int *boff, int *tl, int *toff);
/* Rank 0's bytes on every rank. */
int dist_bcast(void *p, size_t bytes);
/* Sums over the ranks, in place. */
int dist_sum_f64(double *v, int n);
int dist_sum_i64(int64_t *v, int n);
/* Lowest and highest value of v over the ranks. */
void dist_minmax(long long v, long long *lo, long long *hi);

/* The MPI helper of one graph (NULL with one rank): created, then the state of rank 0 broadcast. */
int dist_attach(clt_graph *g, dist_graph **out);
/* Gradient of the mean loss over `global_rows` from this rank's `local_rows`; times the reduction. */
int dist_reduce(dist_graph *d, int local_rows, int global_rows);
/* Batch-norm running statistics averaged over the ranks (before each evaluation and checkpoint). */
int dist_sync_buffers(dist_graph *d);
/* Milliseconds spent in gradient reductions so far, from this rank's gradients reaching the host to the last
 * bucket reduced (so including waiting for slower ranks, not the backward pass), and their count. */
double dist_reduce_ms(dist_graph *d, uint64_t *count);
void dist_detach(dist_graph *d);

#endif
