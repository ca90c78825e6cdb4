/* Host libc glue for sim.c (kept apart: sim.c uses hvmloader's util.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sim_vprintf(const char *fmt, va_list ap)
{
    return vprintf(fmt, ap);
}

void sim_fprintf_err(const char *fmt)
{
    fprintf(stderr, "CHECK FAILED: printf format hvmloader does not support: \"%s\"\n", fmt);
}

int sim_writefile(const char *dir, const char *name, const void *p, unsigned n)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    if ( !f || fwrite(p, 1, n, f) != n )
    {
        perror(path);
        exit(2);
    }
    return fclose(f);
}

void sim_exit(int code)
{
    fflush(stdout);
    exit(code);
}

void *sim_calloc(unsigned n)
{
    return calloc(1, n);
}
