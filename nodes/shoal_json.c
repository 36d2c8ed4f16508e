/*  =========================================================================
    shoal_json - the little JSON the shoal command-line tool needs

    The checker is a recursive-descent parser of RFC 8259 that builds
    nothing: each s_value call consumes one value and returns the offset
    after it, or fails with the offset of the first wrong byte. It is
    strict on purpose: "is this payload JSON" must never say yes to bytes
    that another parser would refuse, since the answer decides whether the
    payload is embedded in the output as JSON or as base64.
    ========================================================================= */

#include "shoal_json.h"

#include <stdlib.h>
#include <string.h>

size_t
shoal_utf8_sequence (const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t c = data[0];
    if (c < 0x80)
        return 1;
    size_t length;
    uint32_t value, min;
    if ((c & 0xe0) == 0xc0) {
        length = 2;
        value = c & 0x1f;
        min = 0x80;
    }
    else if ((c & 0xf0) == 0xe0) {
        length = 3;
        value = c & 0x0f;
        min = 0x800;
    }
    else if ((c & 0xf8) == 0xf0) {
        length = 4;
        value = c & 0x07;
        min = 0x10000;
    }
    else
        return 0;
    if (size < length)
        return 0;
    for (size_t i = 1; i < length; i++) {
        if ((data[i] & 0xc0) != 0x80)
            return 0;
        value = (value << 6) | (data[i] & 0x3f);
    }
    if (value < min || value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff))
        return 0;
    return length;
}

void
shoal_json_put_string (FILE *out, const char *text, size_t size)
{
    const uint8_t *data = (const uint8_t *) text;
    putc ('"', out);
    size_t i = 0;
    while (i < size) {
        uint8_t c = data[i];
        if (c == '"' || c == '\\') {
            putc ('\\', out);
            putc (c, out);
            i++;
        }
        else if (c < 0x20 || c == 0x7f) {
            switch (c) {
                case '\n': fputs ("\\n", out); break;
                case '\r': fputs ("\\r", out); break;
                case '\t': fputs ("\\t", out); break;
                case '\b': fputs ("\\b", out); break;
                case '\f': fputs ("\\f", out); break;
                default: fprintf (out, "\\u%04x", c);
            }
            i++;
        }
        else if (c < 0x80) {
            putc (c, out);
            i++;
        }
        else {
            size_t length = shoal_utf8_sequence (data + i, size - i);
            if (length == 0) {
                fputs ("\\ufffd", out);
                i++;
            }
            else {
                fwrite (data + i, 1, length, out);
                i += length;
            }
        }
    }
    putc ('"', out);
}

void
shoal_json_put_cstring (FILE *out, const char *text)
{
    shoal_json_put_string (out, text ? text : "", text ? strlen (text) : 0);
}

//  --------------------------------------------------------------------------
//  Checker

typedef struct {
    const uint8_t *data; //  the text
    size_t size;         //  its length
    size_t at;           //  scan position
    const char *why;     //  reason of the failure
    int depth;           //  nesting now
} s_scan_t;

static bool
s_fail (s_scan_t *scan, const char *why)
{
    scan->why = why;
    return false;
}

static void
s_space (s_scan_t *scan)
{
    while (scan->at < scan->size
           && (scan->data[scan->at] == ' ' || scan->data[scan->at] == '\t'
               || scan->data[scan->at] == '\n' || scan->data[scan->at] == '\r'))
        scan->at++;
}

static int
s_hex4 (s_scan_t *scan, uint32_t *value)
{
    if (scan->size - scan->at < 4)
        return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = scan->data[scan->at + (size_t) i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t) (c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t) (c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t) (c - 'A' + 10);
        else
            return -1;
    }
    scan->at += 4;
    *value = v;
    return 0;
}

static bool
s_string (s_scan_t *scan)
{
    scan->at++; //  the opening quote
    while (scan->at < scan->size) {
        uint8_t c = scan->data[scan->at];
        if (c == '"') {
            scan->at++;
            return true;
        }
        if (c < 0x20)
            return s_fail (scan, "control character in a string (must be escaped)");
        if (c == '\\') {
            scan->at++;
            if (scan->at >= scan->size)
                break;
            c = scan->data[scan->at++];
            if (c == 'u') {
                uint32_t unit;
                if (s_hex4 (scan, &unit))
                    return s_fail (scan, "\\u needs four hex digits");
                if (unit >= 0xdc00 && unit <= 0xdfff)
                    return s_fail (scan, "unpaired low surrogate escape");
                if (unit >= 0xd800 && unit <= 0xdbff) {
                    uint32_t low;
                    if (scan->size - scan->at < 2 || scan->data[scan->at] != '\\'
                        || scan->data[scan->at + 1] != 'u')
                        return s_fail (scan, "unpaired high surrogate escape");
                    scan->at += 2;
                    if (s_hex4 (scan, &low) || low < 0xdc00 || low > 0xdfff)
                        return s_fail (scan, "unpaired high surrogate escape");
                }
            }
            else if (!strchr ("\"\\/bfnrt", c) || c == 0) {
                scan->at--;
                return s_fail (scan, "unknown escape in a string");
            }
            continue;
        }
        if (c < 0x80) {
            scan->at++;
            continue;
        }
        size_t length = shoal_utf8_sequence (scan->data + scan->at, scan->size - scan->at);
        if (length == 0)
            return s_fail (scan, "string is not valid UTF-8");
        scan->at += length;
    }
    return s_fail (scan, "unterminated string");
}

static bool
s_digits (s_scan_t *scan)
{
    size_t start = scan->at;
    while (scan->at < scan->size && scan->data[scan->at] >= '0' && scan->data[scan->at] <= '9')
        scan->at++;
    return scan->at > start;
}

static bool
s_number (s_scan_t *scan)
{
    if (scan->data[scan->at] == '-')
        scan->at++;
    if (scan->at >= scan->size)
        return s_fail (scan, "number without digits");
    if (scan->data[scan->at] == '0')
        scan->at++;
    else if (!s_digits (scan))
        return s_fail (scan, "number without digits");
    if (scan->at < scan->size && scan->data[scan->at] == '.') {
        scan->at++;
        if (!s_digits (scan))
            return s_fail (scan, "no digits after the decimal point");
    }
    if (scan->at < scan->size && (scan->data[scan->at] == 'e' || scan->data[scan->at] == 'E')) {
        scan->at++;
        if (scan->at < scan->size && (scan->data[scan->at] == '+' || scan->data[scan->at] == '-'))
            scan->at++;
        if (!s_digits (scan))
            return s_fail (scan, "no digits in the exponent");
    }
    return true;
}

static bool
s_literal (s_scan_t *scan, const char *word)
{
    size_t length = strlen (word);
    if (scan->size - scan->at < length || memcmp (scan->data + scan->at, word, length) != 0)
        return s_fail (scan, "unexpected character");
    scan->at += length;
    return true;
}

static bool s_value (s_scan_t *scan);

static bool
s_container (s_scan_t *scan, bool object)
{
    if (++scan->depth > SHOAL_JSON_MAX_DEPTH)
        return s_fail (scan, "nested too deep");
    uint8_t close = object ? '}' : ']';
    scan->at++;
    s_space (scan);
    if (scan->at < scan->size && scan->data[scan->at] == close) {
        scan->at++;
        scan->depth--;
        return true;
    }
    while (true) {
        if (object) {
            if (scan->at >= scan->size || scan->data[scan->at] != '"')
                return s_fail (scan, "expected a string as object key");
            if (!s_string (scan))
                return false;
            s_space (scan);
            if (scan->at >= scan->size || scan->data[scan->at] != ':')
                return s_fail (scan, "expected ':' after an object key");
            scan->at++;
        }
        if (!s_value (scan))
            return false;
        s_space (scan);
        if (scan->at >= scan->size)
            return s_fail (scan, object ? "unterminated object" : "unterminated array");
        if (scan->data[scan->at] == close) {
            scan->at++;
            scan->depth--;
            return true;
        }
        if (scan->data[scan->at] != ',')
            return s_fail (scan, object ? "expected ',' or '}'" : "expected ',' or ']'");
        scan->at++;
        s_space (scan);
    }
}

static bool
s_value (s_scan_t *scan)
{
    s_space (scan);
    if (scan->at >= scan->size)
        return s_fail (scan, "expected a value");
    uint8_t c = scan->data[scan->at];
    switch (c) {
        case '{': return s_container (scan, true);
        case '[': return s_container (scan, false);
        case '"': return s_string (scan);
        case 't': return s_literal (scan, "true");
        case 'f': return s_literal (scan, "false");
        case 'n': return s_literal (scan, "null");
        default:
            if (c == '-' || (c >= '0' && c <= '9'))
                return s_number (scan);
            return s_fail (scan, "unexpected character");
    }
}

bool
shoal_json_valid (const uint8_t *data, size_t size, size_t *error_at, const char **why_p)
{
    s_scan_t scan = {data, size, 0, NULL, 0};
    bool valid = data != NULL && s_value (&scan);
    if (valid) {
        s_space (&scan);
        if (scan.at != size)
            valid = s_fail (&scan, "more after the value");
    }
    if (!valid) {
        if (error_at)
            *error_at = scan.at;
        if (why_p)
            *why_p = scan.why ? scan.why : "empty";
    }
    return valid;
}

void
shoal_json_put_compact (FILE *out, const uint8_t *data, size_t size)
{
    bool in_string = false;
    for (size_t i = 0; i < size; i++) {
        uint8_t c = data[i];
        if (in_string) {
            putc (c, out);
            if (c == '\\' && i + 1 < size)
                putc (data[++i], out);
            else if (c == '"')
                in_string = false;
        }
        else if (c == '"') {
            in_string = true;
            putc (c, out);
        }
        else if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            putc (c, out);
    }
}

//  --------------------------------------------------------------------------
//  Base64

static const char s_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *
shoal_base64_encode (const uint8_t *data, size_t size)
{
    char *text = (char *) malloc ((size + 2) / 3 * 4 + 1);
    if (!text)
        return NULL;
    char *out = text;
    size_t i = 0;
    for (; i + 2 < size; i += 3) {
        uint32_t v = (uint32_t) data[i] << 16 | (uint32_t) data[i + 1] << 8 | data[i + 2];
        *out++ = s_alphabet[v >> 18];
        *out++ = s_alphabet[(v >> 12) & 63];
        *out++ = s_alphabet[(v >> 6) & 63];
        *out++ = s_alphabet[v & 63];
    }
    if (i < size) {
        uint32_t v = (uint32_t) data[i] << 16;
        if (i + 1 < size)
            v |= (uint32_t) data[i + 1] << 8;
        *out++ = s_alphabet[v >> 18];
        *out++ = s_alphabet[(v >> 12) & 63];
        *out++ = i + 1 < size ? s_alphabet[(v >> 6) & 63] : '=';
        *out++ = '=';
    }
    *out = 0;
    return text;
}

void
shoal_json_put_base64 (FILE *out, const uint8_t *data, size_t size)
{
    char *text = shoal_base64_encode (data, size);
    putc ('"', out);
    if (text)
        fputs (text, out);
    putc ('"', out);
    free (text);
}
