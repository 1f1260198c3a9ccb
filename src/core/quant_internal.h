/* Shared by the rule trace and the quantizing session: ops counted per module call. */
#ifndef LINNX_QUANT_INTERNAL_H
#define LINNX_QUANT_INTERNAL_H

typedef struct {
    char *path, *op;
    int count;
} lx_qt_counter;

typedef struct {
    lx_qt_counter *v;
    int n, cap;
} lx_qt_counters;

/* The op's number within its module's current call (see quant_rules.c); -1 out of memory. */
int lx_qt_next_count(lx_qt_counters *c, const char *path, const char *op);
void lx_qt_counters_free(lx_qt_counters *c);

#endif
