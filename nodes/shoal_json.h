/*  =========================================================================
    shoal_json - the little JSON the shoal command-line tool needs

    The tool prints one JSON object per line for scripts (`--json`) and
    must tell whether an event's payload is JSON (printed as a JSON value)
    or not (printed as base64). That takes three things, written here by
    hand so the tool needs no JSON library:

    - a writer for string literals that escapes what RFC 8259 requires
      and turns bytes that are not UTF-8 into U+FFFD, so the output is
      always valid JSON whatever the input;
    - a strict checker (RFC 8259: one value, no trailing commas, no
      comments, no NaN, UTF-8 strings, no unpaired surrogate escapes,
      bounded nesting) and a compact re-writer for a checked value, so a
      payload spread over lines still prints on one line;
    - base64 (RFC 4648, with padding).
    ========================================================================= */

#ifndef SHOAL_JSON_H_INCLUDED
#define SHOAL_JSON_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

//  Deepest nesting of arrays and objects the checker accepts.
#define SHOAL_JSON_MAX_DEPTH 256

//  Writes size bytes of text as a JSON string literal, quotes included.
void shoal_json_put_string (FILE *out, const char *text, size_t size);

//  Same for a NUL-terminated string (NULL prints "").
void shoal_json_put_cstring (FILE *out, const char *text);

//  True when data is exactly one JSON value (surrounding whitespace
//  allowed). When false and error_at is given, it gets the offset of the
//  first byte that is wrong and *why_p a short reason.
bool shoal_json_valid (const uint8_t *data, size_t size, size_t *error_at, const char **why_p);

//  Writes a value that shoal_json_valid accepted without the whitespace
//  between tokens, so it fits on one line.
void shoal_json_put_compact (FILE *out, const uint8_t *data, size_t size);

//  Writes data in base64 as a JSON string literal, quotes included.
void shoal_json_put_base64 (FILE *out, const uint8_t *data, size_t size);

//  Base64 of data into a new NUL-terminated string. Caller owns it.
char *shoal_base64_encode (const uint8_t *data, size_t size);

//  Length of the valid UTF-8 sequence at data (1-4), or 0 when the bytes
//  there are not one (overlong forms, surrogates and values past U+10FFFF
//  are not).
size_t shoal_utf8_sequence (const uint8_t *data, size_t size);

#endif
