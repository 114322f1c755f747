/* bench_step_main.c - temporary stand-alone `cltrain-bench-step` until `cltrain bench step` calls tool_bench_step. */
#include "tool.h"

int main(int argc, char **argv)
{
    return tool_bench_step(argc, argv);
}
