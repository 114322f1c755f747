/* mse.c - mean squared error over all elements, gradients for both inputs (cl/mse.cl). */
#include "model.h"

static int prepare(clt_graph *g, clt__node *n)
{
    return clt__pair_loss_prepare(g, n, "mse");
}

static const clt__op op_mse = {"mse", prepare, clt__pair_loss_forward, clt__pair_loss_backward, NULL};

int clt_mse(clt_graph *g, clt_tensor *pred, clt_tensor *target, clt_tensor **out)
{
    return clt__pair_loss_new(g, &op_mse, "clt_mse", pred, "pred", target, "target", out);
}

/* No layer keyword of its own in the model text format. */
const clt__op_def clt__opdef_mse = {"mse", NULL, 0};
