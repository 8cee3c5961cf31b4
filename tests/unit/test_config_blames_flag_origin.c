/* An override labelled with where it came from (BRT_CONFIG_ORIGIN_KEY: the flag that set it) is
 * blamed on that label, not on the config file, and a malformed value there is BRT_ERR_INVALID (a
 * usage error); the labels are not a config field; a label for a key the overrides do not set does
 * not move the blame off the file; an unsupported value keeps its status. torch_dtype gives the
 * weights' element type, bf16 when absent or unknown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "model/config.h"

static const char *k_base = "{\"model_type\": \"llama\", \"vocab_size\": 32, \"hidden_size\": 16,"
                            " \"intermediate_size\": 24, \"num_hidden_layers\": 2, \"num_attention_heads\": 2,"
                            " \"max_position_embeddings\": 64%s}";

static brt_status parse(const char *extra, const char *overrides, brt_model_config *c, brt_err *err)
{
    char text[1024];
    snprintf(text, sizeof text, k_base, extra);
    json_error_t je;
    json_t *cfg = json_loads(text, 0, &je), *ov = overrides ? json_loads(overrides, 0, &je) : NULL;
    assert_non_null(cfg);
    if (overrides)
        assert_non_null(ov);
    brt_status st = brt_config_from_json(cfg, ov, "dir/config.json", c, err);
    json_decref(cfg);
    json_decref(ov);
    return st;
}

static void starts_with(const char *msg, const char *prefix)
{
    if (strncmp(msg, prefix, strlen(prefix)) != 0)
        fail_msg("'%s' does not start with '%s'", msg, prefix);
}

static void test_flag_value_blamed_on_the_flag(void **s)
{
    (void)s;
    brt_model_config c;
    brt_err err;
    brt_status st = parse("", "{\"beacon_window\": 0, \"__origin__\": {\"beacon_window\": \"--beacon-window\"}}", &c, &err);
    assert_int_equal(st, BRT_ERR_INVALID);
    starts_with(err.msg, "--beacon-window: \"beacon_window\" must be an integer");
    assert_null(strstr(err.msg, "config.json"));
    st = parse("", "{\"policy\": \"beacon_v1\", \"beacon_ratio\": [-3], \"__origin__\": {\"beacon_ratio\": \"--beacon-ratio\"}}",
               &c, &err);
    assert_int_equal(st, BRT_ERR_INVALID);
    starts_with(err.msg, "--beacon-ratio: \"beacon_ratio\"[0] must be an integer");
    /* without a label: the file, as before */
    st = parse("", "{\"beacon_window\": 0}", &c, &err);
    assert_int_equal(st, BRT_ERR_FORMAT);
    starts_with(err.msg, "dir/config.json: \"beacon_window\"");
}

static void test_labels_are_not_fields_and_only_cover_overridden_keys(void **s)
{
    (void)s;
    brt_model_config c;
    brt_err err;
    /* valid overrides with labels: no "unknown field __origin__" */
    assert_int_equal(parse("", "{\"beacon_window\": 16, \"__origin__\": {\"beacon_window\": \"--beacon-window\"}}", &c, &err),
                     BRT_OK);
    assert_int_equal(c.policy, BRT_POLICY_BEACON_V1);
    assert_int_equal(c.beacon.window, 16);
    /* the file's own bad value stays the file's, whatever labels say */
    brt_status st = parse(", \"beacon_window\": 0", "{\"__origin__\": {\"beacon_window\": \"--beacon-window\"}}", &c, &err);
    assert_int_equal(st, BRT_ERR_FORMAT);
    starts_with(err.msg, "dir/config.json: ");
    /* labels of the wrong shape are ignored, not trusted */
    st = parse("", "{\"beacon_window\": 0, \"__origin__\": [1, 2]}", &c, &err);
    assert_int_equal(st, BRT_ERR_FORMAT);
    starts_with(err.msg, "dir/config.json: ");
    st = parse("", "{\"beacon_window\": 0, \"__origin__\": {\"beacon_window\": 7}}", &c, &err);
    starts_with(err.msg, "dir/config.json: ");
}

static void test_unsupported_and_combined_checks(void **s)
{
    (void)s;
    brt_model_config c;
    brt_err err;
    brt_status st = parse("", "{\"policy\": \"beacons\", \"__origin__\": {\"policy\": \"--policy\"}}", &c, &err);
    assert_int_equal(st, BRT_ERR_UNSUPPORTED);
    starts_with(err.msg, "--policy: \"policy\": \"beacons\" is not supported");
    /* stride from the file, window from the flag: the flag is blamed */
    st = parse(", \"beacon_window\": 64, \"beacon_stride\": [64]",
               "{\"beacon_window\": 32, \"__origin__\": {\"beacon_window\": \"--beacon-window\"}}", &c, &err);
    assert_int_equal(st, BRT_ERR_INVALID);
    starts_with(err.msg, "--beacon-window: \"beacon_stride\" 64 is larger than \"beacon_window\" 32");
    st = parse("", "{\"rope_interleaved\": true, \"__origin__\": {\"rope_interleaved\": \"--set rope_interleaved\"}}", &c,
               &err);
    assert_int_equal(st, BRT_ERR_UNSUPPORTED);
    starts_with(err.msg, "--set rope_interleaved: unknown field \"rope_interleaved\"");
}

static void test_torch_dtype(void **s)
{
    (void)s;
    brt_model_config c;
    brt_err err;
    assert_int_equal(parse("", NULL, &c, &err), BRT_OK);
    assert_int_equal(c.weight_dtype, BRT_DT_BF16);
    assert_false(c.weight_dtype_given);
    const struct {
        const char *json;
        brt_dtype dt;
        int given;
    } k[] = {{", \"torch_dtype\": \"bfloat16\"", BRT_DT_BF16, 1}, {", \"torch_dtype\": \"float16\"", BRT_DT_F16, 1},
             {", \"torch_dtype\": \"float32\"", BRT_DT_F32, 1},   {", \"torch_dtype\": \"auto\"", BRT_DT_BF16, 0},
             {", \"torch_dtype\": null", BRT_DT_BF16, 0},         {", \"torch_dtype\": 3", BRT_DT_BF16, 0}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        if (parse(k[i].json, NULL, &c, &err) != BRT_OK)
            fail_msg("%s: %s", k[i].json, err.msg);
        assert_int_equal(c.weight_dtype, k[i].dt);
        assert_int_equal(c.weight_dtype_given, k[i].given);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flag_value_blamed_on_the_flag),
        cmocka_unit_test(test_labels_are_not_fields_and_only_cover_overridden_keys),
        cmocka_unit_test(test_unsupported_and_combined_checks),
        cmocka_unit_test(test_torch_dtype),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
