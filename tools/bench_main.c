/* bench_main.c - TEMPORARY entry point of cltrain-bench until `bench` and `tune` are folded into cltrain. */
#include <stdio.h>
#include <string.h>

#include "tool.h"

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "bench") == 0) return tool_cmd_bench(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "tune") == 0) return tool_cmd_tune(argc - 1, argv + 1);
    fprintf(stderr, "usage: cltrain-bench bench gemm M N K [options] | cltrain-bench tune gemm M N K [options]\n");
    return 2;
}
