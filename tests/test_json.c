/*  test_json - the shoal tool's JSON: the strict checker that decides
    whether a payload is printed as JSON or as base64, the compact
    re-writer, string escaping and base64. */

#include "shoal_json.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool
s_valid (const char *text)
{
    return shoal_json_valid ((const uint8_t *) text, strlen (text), NULL, NULL);
}

//  What a writer function prints, as a new string.
static char *
s_capture_string (const char *text, size_t size)
{
    char *out = NULL;
    size_t out_size = 0;
    FILE *file = open_memstream (&out, &out_size);
    shoal_json_put_string (file, text, size);
    fclose (file);
    return out;
}

int
main (void)
{
    plan_lazy ();
    const char *valid[] = {"{}",
                           "[]",
                           "0",
                           "-0",
                           "12.5e-3",
                           "1E+2",
                           "\"\"",
                           "true",
                           "false",
                           "null",
                           " {\"a\" : [1, 2, {\"b\": null}] }\n",
                           "\"\\u00e9\\n\\t\\\"\\\\\\/\"",
                           "\"caf\xc3\xa9\"",
                           "\"\\ud83d\\ude00\"",
                           "\"\xf0\x9f\x98\x80\"",
                           "[1,\n 2]"};
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
        ok (s_valid (valid[i]), "valid JSON accepted: %zu", i);
    const char *invalid[] = {"",
                             " ",
                             "{",
                             "[1,]",
                             "{\"a\":1,}",
                             "{a:1}",
                             "'x'",
                             "01",
                             "1.",
                             ".5",
                             "+1",
                             "NaN",
                             "Infinity",
                             "tru",
                             "nul",
                             "[1 2]",
                             "{} {}",
                             "\"abc",
                             "\"\x01\"",
                             "\"\\x41\"",
                             "\"\\ud800\"",
                             "\"\\udc00\"",
                             "\"\xc3\x28\"",
                             "\"\xed\xa0\x80\"",
                             "\"\xc0\xaf\"",
                             "// comment\n1",
                             "[1]x",
                             "{\"a\" 1}",
                             "\"\\u12\""};
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
        ok (!s_valid (invalid[i]), "invalid JSON refused: %zu", i);
    //  Nesting: at the limit is fine, one deeper is not.
    char deep[2 * SHOAL_JSON_MAX_DEPTH + 3];
    memset (deep, '[', SHOAL_JSON_MAX_DEPTH);
    memset (deep + SHOAL_JSON_MAX_DEPTH, ']', SHOAL_JSON_MAX_DEPTH);
    deep[2 * SHOAL_JSON_MAX_DEPTH] = 0;
    ok (s_valid (deep), "nesting at the limit is accepted");
    char deeper[2 * SHOAL_JSON_MAX_DEPTH + 3];
    memset (deeper, '[', SHOAL_JSON_MAX_DEPTH + 1);
    memset (deeper + SHOAL_JSON_MAX_DEPTH + 1, ']', SHOAL_JSON_MAX_DEPTH + 1);
    deeper[2 * SHOAL_JSON_MAX_DEPTH + 2] = 0;
    ok (!s_valid (deeper), "nesting past the limit is refused (no stack overflow)");
    //  The error offset points at the first wrong byte.
    size_t at = 0;
    const char *why = NULL;
    ok (!shoal_json_valid ((const uint8_t *) "[1,,2]", 6, &at, &why) && at == 3 && why,
        "the error offset points at the first wrong byte");

    //  Compact form: whitespace between tokens goes, strings stay.
    const char *spread = "{ \"a b\" : [ 1 ,\n 2 ] ,\t\"c\":\"x \\\" y\" }";
    char *out = NULL;
    size_t out_size = 0;
    FILE *file = open_memstream (&out, &out_size);
    shoal_json_put_compact (file, (const uint8_t *) spread, strlen (spread));
    fclose (file);
    is_str (out, "{\"a b\":[1,2],\"c\":\"x \\\" y\"}", "compact form keeps strings intact");
    free (out);

    //  String escaping: output is always valid JSON.
    out = s_capture_string ("a\"b\\c\n\x01\x7f", 8);
    is_str (out, "\"a\\\"b\\\\c\\n\\u0001\\u007f\"", "quotes, backslashes and controls escaped");
    ok (s_valid (out), "the escaped string is valid JSON");
    free (out);
    out = s_capture_string ("caf\xc3\xa9 \xff\xfe", 8);
    is_str (out, "\"caf\xc3\xa9 \\ufffd\\ufffd\"",
            "UTF-8 kept, bytes that are not UTF-8 become U+FFFD");
    ok (s_valid (out), "so the output stays valid JSON");
    free (out);
    out = s_capture_string ("a\0b", 3);
    is_str (out, "\"a\\u0000b\"", "a NUL byte is escaped");
    free (out);

    //  Base64 (RFC 4648 test vectors).
    const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char *text = shoal_base64_encode ((const uint8_t *) plain[i], strlen (plain[i]));
        is_str (text, coded[i], "base64 of \"%s\"", plain[i]);
        free (text);
    }
    return done_testing ();
}
