/* beaconrt: long-document inference with Activation Beacon and LongLLaMA memory layers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "cli.h"

/* the MPI transport when an MPI launcher started this process (NULL otherwise) */
brt_transport *g_cli_tr = NULL;

static const char *const k_usage =
    "usage: beaconrt <command> [options]   (beaconrt <command> --help for each)\n"
    "\n"
    "commands:\n"
    "  generate   continue one prompt (text, file or token ids)\n"
    "  logits     logits at every position of one input (the numerical contract)\n"
    "  run        batch jobs (OpenAI Batch JSONL in and out, journal/resume), under mpirun/srun\n"
    "  serve      an OpenAI-compatible HTTP API (completions, chat, streaming, metrics), under mpirun/srun\n"
    "  inspect    model facts: architecture, parameters, memory for a document length\n"
    "  plan       per-stage layers, memory and how many long jobs a deployment holds\n"
    "  version    print the version\n";

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(k_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    int (*fn)(int, char **) = !strcmp(cmd, "generate") ? cmd_generate
                              : !strcmp(cmd, "logits") ? cmd_logits
                              : !strcmp(cmd, "run")    ? cmd_run
                              : !strcmp(cmd, "serve")  ? cmd_serve
                                                       : NULL;
    if (fn) {
        int help = 0;
        for (int i = 2; i < argc; i++)
            help |= !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
        const char *step_tasks = getenv("SLURM_STEP_NUM_TASKS");
        if (!help && !brt_mpi_launched() && step_tasks && strtol(step_tasks, NULL, 10) > 1) {
            /* srun without MPI wire-up: N processes that would each run the whole job */
            fprintf(stderr,
                    "beaconrt %s: error: srun started %s tasks but none has MPI wire-up (launch with srun --mpi=pmix, "
                    "or mpirun inside the allocation); refusing to run %s independent copies\n",
                    cmd, step_tasks, step_tasks);
            return 1;
        }
        if (brt_mpi_launched() && !help) {
            brt_err err;
            if (brt_mpi_transport_create(&argc, &argv, &g_cli_tr, &err) != BRT_OK) {
                fprintf(stderr, "beaconrt %s: error: %s\n", cmd, err.msg);
                return 1;
            }
        }
        int rc = fn(argc - 1, argv + 1);
        if (g_cli_tr)
            g_cli_tr->destroy(g_cli_tr);
        return rc;
    }
    if (!strcmp(cmd, "inspect"))
        return cmd_inspect(argc - 1, argv + 1);
    if (!strcmp(cmd, "plan"))
        return cmd_plan(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("beaconrt %s\n", BRT_VERSION);
        return 0;
    }
    fprintf(stderr, "beaconrt: unknown command '%s'\n\n%s", cmd, k_usage);
    return 2;
}
