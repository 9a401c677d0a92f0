/* replay.c — runs a fuzz target's LLVMFuzzerTestOneInput over every file of
 * the corpus directories given, without libFuzzer: the normal test run
 * replays every input a fuzzer ever kept (and every crash found, once
 * added), under whatever sanitizers the build has. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    size_t got = b && n > 0 ? fread(b, 1, (size_t)n, f) : 0;
    fclose(f);
    if (!b)
        return -1;
    LLVMFuzzerTestOneInput(b, got);
    free(b);
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = 0;
    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        if (!d) {
            if (run_file(argv[i]))
                return fprintf(stderr, "replay: %s: cannot read\n", argv[i]), 1;
            n++;
            continue;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", argv[i], de->d_name);
            if (run_file(p))
                return fprintf(stderr, "replay: %s: cannot read\n", p), 1;
            n++;
        }
        closedir(d);
    }
    printf("replay: %zu inputs\n", n);
    return n ? 0 : 1;
}
