/* beaconrt: long-document inference with Activation Beacon and LongLLaMA memory layers. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char *const k_usage =
    "usage: beaconrt <command> [options]   (beaconrt <command> --help for each)\n"
    "\n"
    "commands:\n"
    "  generate   continue one prompt (text, file or token ids)\n"
    "  logits     logits at every position of one input (the numerical contract)\n"
    "  inspect    model facts: architecture, parameters, memory for a document length\n"
    "  version    print the version\n";

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(k_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "generate"))
        return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "logits"))
        return cmd_logits(argc - 1, argv + 1);
    if (!strcmp(cmd, "inspect"))
        return cmd_inspect(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("beaconrt %s\n", BRT_VERSION);
        return 0;
    }
    fprintf(stderr, "beaconrt: unknown command '%s'\n\n%s", cmd, k_usage);
    return 2;
}
