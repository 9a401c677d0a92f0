/* limits.c — checks shared by the parsers of untrusted files (codec.h
 * "limits"). */
#include <errno.h>

#include "codec.h"
#include "quant_impl.h"

int qf_json_check(const char *text, size_t len, const char *what, uint32_t max_values, uint32_t max_containers,
                  char *err, size_t errlen)
{
    /* A value starts at a container, or at the first byte of a scalar
     * after the start, '{', '[', ':' or ','. */
    uint64_t values = 0, containers = 0;
    unsigned depth = 0;
    bool in_str = false, esc = false, expect = true;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"')
                in_str = false;
            continue;
        }
        bool start; /* c begins a value (a key counts: it costs as much) */
        switch (c) {
        case ' ': case '\t': case '\n': case '\r': continue;
        case ':': case ',': expect = true; continue;
        case '}': case ']':
            depth -= depth > 0;
            expect = false;
            continue;
        case '{': case '[':
            if (++depth > QF_JSON_MAX_DEPTH)
                return qf_fail(err, errlen, -EINVAL, "%s: JSON nested deeper than quantfs' limit of %u", what,
                               QF_JSON_MAX_DEPTH);
            if (++containers > max_containers)
                return qf_fail(err, errlen, -EINVAL, "%s: more than quantfs' limit of %u JSON objects and arrays",
                               what, max_containers);
            start = expect = true;
            break;
        default: /* a string, number or literal; only its first byte starts one */
            in_str = c == '"';
            start = expect;
            expect = false;
        }
        if (start && ++values > max_values)
            return qf_fail(err, errlen, -EINVAL, "%s: more than quantfs' limit of %u JSON values", what, max_values);
    }
    return 0;
}
