/* bce.c - binary cross-entropy on logits, mean over all elements, gradients for both inputs (cl/bce.cl). */
#include "model.h"

static int prepare(clt_graph *g, clt__node *n)
{
    return clt__pair_loss_prepare(g, n, "bce");
}

static const clt__op op_bce = {"bce_with_logits", prepare, clt__pair_loss_forward, clt__pair_loss_backward, NULL};

int clt_bce_with_logits(clt_graph *g, clt_tensor *logits, clt_tensor *targets, clt_tensor **out)
{
    return clt__pair_loss_new(g, &op_bce, "clt_bce_with_logits", logits, "logits", targets, "targets", out);
}

/* No layer keyword of its own in the model text format. */
const clt__op_def clt__opdef_bce = {"bce", NULL, 0};
