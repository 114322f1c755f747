/* table.c - the op table (ops.def) as data: every op's layer keywords for the model text format, in order. */
#include <string.h>

#include "model.h"

#define CLT_OP(name) extern const clt__op_def clt__opdef_##name;
#include "ops.def"
#undef CLT_OP

static const clt__op_def *const op_table[] = {
#define CLT_OP(name) &clt__opdef_##name,
#include "ops.def"
#undef CLT_OP
};

const clt__layer_type *clt__layer_type_at(int i)
{
    if (i < 0) return NULL;
    for (size_t k = 0; k < sizeof op_table / sizeof *op_table; k++) {
        if (i < op_table[k]->nlayers) return &op_table[k]->layers[i];
        i -= op_table[k]->nlayers;
    }
    return NULL;
}

const clt__layer_type *clt__layer_type_find(const char *keyword)
{
    const clt__layer_type *t;
    for (int i = 0; (t = clt__layer_type_at(i)); i++)
        if (strcmp(t->keyword, keyword) == 0) return t;
    return NULL;
}
