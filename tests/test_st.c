/* test_st.c — the safetensors parser and layouts on hostile input: every
 * truncation of a real file and random mutations of its header must be
 * rejected cleanly or yield layouts that read in full (ASan in CI). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "codec.h"
#include "testutil.h"

static uint8_t *load(size_t *n)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/models/stories260K/hf/model.safetensors", shared_dir());
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    uint8_t *b = malloc(*n);
    assert_int_equal(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

/* parse, then lay out and read every view in full */
static int exercise(const uint8_t *p, size_t n)
{
    struct tmem m = {p, n};
    struct qf_st *st;
    char err[256] = "";
    int rc = qf_st_parse(tmem_pread, &m, n, &st, err, sizeof err);
    if (rc) {
        assert_true(err[0]);
        return rc;
    }
    size_t nv;
    const struct qf_view *v = qf_views(&nv);
    for (size_t i = 0; i < nv; i++) {
        if (!(v[i].formats & QF_FMT_SAFETENSORS))
            continue;
        struct qf_layout *l;
        assert_int_equal(qf_layout_safetensors(st, &v[i], &l, err, sizeof err), 0);
        uint8_t *out = malloc(l->size + 1);
        assert_int_equal(qf_layout_read(l, 0, l->size, out, tmem_pread, &m), 0);
        /* the view itself is valid safetensors */
        struct tmem o = {out, l->size};
        struct qf_st *back;
        assert_int_equal(qf_st_parse(tmem_pread, &o, l->size, &back, err, sizeof err), 0);
        qf_st_free(back);
        free(out);
        qf_layout_free(l);
    }
    qf_st_free(st);
    return 0;
}

static void test_real_file(void **state)
{
    (void)state;
    size_t n;
    uint8_t *b = load(&n);
    assert_int_equal(exercise(b, n), 0);
    free(b);
}

static void test_truncations(void **state)
{
    (void)state;
    size_t n;
    uint8_t *b = load(&n);
    for (size_t k = 0; k < n; k += (k < 5000 ? 3 : 997))
        assert_int_not_equal(exercise(b, k), 0);
    free(b);
}

static void test_header_mutations(void **state)
{
    (void)state;
    size_t n;
    uint8_t *b = load(&n);
    uint64_t hl = qf_get64_test(b);
    uint64_t s = 7;
    int accepted = 0;
    for (int it = 0; it < 1200; it++) {
        uint8_t *p = malloc(n);
        memcpy(p, b, n);
        for (int k = 0; k < 1 + it % 3; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = 8 + (size_t)(s >> 33) % hl;
            /* digits and JSON punctuation make for deeper mutations */
            static const char alphabet[] = "0123456789[]{},:\" -e.";
            p[at] = (uint8_t)alphabet[(s >> 20) % (sizeof alphabet - 1)];
        }
        accepted += exercise(p, n) == 0;
        free(p);
    }
    /* some mutations (e.g. inside a name) are still valid files */
    assert_true(accepted > 0);
    free(b);
}

/* The llama3 rope factors against torch running the converter's own code
 * (tests/refs/hf/rope_grid.py on the device: 4992 values, some where
 * libm's powf and torch's pow differ by an ulp). */
static void test_llama3_rope_factors(void **state)
{
    (void)state;
    const char *dir = getenv("QUANTFS_TESTS");
    char path[4096];
    snprintf(path, sizeof path, "%s/refs/hf/rope_grid.json", dir ? dir : "tests");
    json_error_t je;
    json_t *g = json_load_file(path, 0, &je);
    assert_non_null(g);
    size_t i, n = 0;
    json_t *e;
    json_array_foreach(g, i, e) {
        json_t *p = json_object_get(e, "params");
        long long hd = json_integer_value(json_object_get(e, "head_dim"));
        const char *hex = json_string_value(json_object_get(e, "f32le"));
        assert_true(hd > 0 && hd <= 512 && hex && strlen(hex) == (size_t)hd / 2 * 8);
        float got[256];
        qf_hf_rope_llama3(json_number_value(json_object_get(p, "rope_theta")), hd,
                          json_number_value(json_object_get(p, "factor")),
                          json_number_value(json_object_get(p, "low_freq_factor")),
                          json_number_value(json_object_get(p, "high_freq_factor")),
                          json_integer_value(json_object_get(p, "original_max_position_embeddings")), got);
        for (long long k = 0; k < hd / 2; k++, n++) {
            uint8_t b[4];
            for (int j = 0; j < 4; j++)
                assert_int_equal(sscanf(hex + 8 * k + 2 * j, "%2hhx", &b[j]), 1);
            if (memcmp(b, &got[k], 4)) /* little-endian f32, as the file */
                fail_msg("theta %g head_dim %lld element %lld: %a, torch has another value",
                         json_number_value(json_object_get(p, "rope_theta")), hd, k, (double)got[k]);
        }
    }
    assert_int_equal(n, 4992);
    json_decref(g);
}

int main(void)
{
    require_shared();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_file),
        cmocka_unit_test(test_llama3_rope_factors),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_header_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
