/*  =========================================================================
    shoal_error - the error codes of libshoal

    One table holds, for each code, its name, its sentence and the wire code
    that reports it, so the three can never disagree.
    ========================================================================= */

#include "shoal_error.h"

#include <stddef.h>

typedef struct {
    const char *name;    //  symbolic name of the code
    const char *message; //  what went wrong, in words
    uint32_t wire_code;  //  Error.code that reports it on the wire
} s_error_info_t;

static const s_error_info_t s_errors[SHOAL_ERR_COUNT] = {
    [SHOAL_OK] = {"SHOAL_OK", "success", 0},
    [SHOAL_ERR_EMPTY] = {"SHOAL_ERR_EMPTY", "empty message", SHOAL_WIRE_BAD_REQUEST},
    [SHOAL_ERR_MALFORMED] = {"SHOAL_ERR_MALFORMED", "malformed message (not valid protobuf)",
                             SHOAL_WIRE_BAD_REQUEST},
    [SHOAL_ERR_TOO_LARGE] = {"SHOAL_ERR_TOO_LARGE", "message larger than the maximum size",
                             SHOAL_WIRE_TOO_LARGE},
    [SHOAL_ERR_BAD_STREAM] = {"SHOAL_ERR_BAD_STREAM",
                              "invalid stream name (must match [a-z0-9][a-z0-9._-]{0,63})",
                              SHOAL_WIRE_BAD_REQUEST},
    [SHOAL_ERR_BAD_TYPE] = {"SHOAL_ERR_BAD_TYPE",
                            "invalid event type (must match [A-Za-z0-9_][A-Za-z0-9._:-]{0,127})",
                            SHOAL_WIRE_BAD_REQUEST},
    [SHOAL_ERR_BAD_ORIGIN] = {"SHOAL_ERR_BAD_ORIGIN", "origin must be 16 bytes",
                              SHOAL_WIRE_BAD_REQUEST},
    [SHOAL_ERR_BAD_ID] = {"SHOAL_ERR_BAD_ID", "event id must be 16 bytes", SHOAL_WIRE_BAD_REQUEST},
    [SHOAL_ERR_BAD_UTF8] = {"SHOAL_ERR_BAD_UTF8", "string field is not valid UTF-8",
                            SHOAL_WIRE_BAD_REQUEST},
    [SHOAL_ERR_INVALID] = {"SHOAL_ERR_INVALID", "invalid argument", SHOAL_WIRE_BAD_REQUEST},
    [SHOAL_ERR_IO] = {"SHOAL_ERR_IO", "input/output error", SHOAL_WIRE_STORAGE},
    [SHOAL_ERR_NOSPC] = {"SHOAL_ERR_NOSPC", "no space left on device", SHOAL_WIRE_STORAGE},
    [SHOAL_ERR_CORRUPT] = {"SHOAL_ERR_CORRUPT", "stored data is corrupt (checksum or framing)",
                           SHOAL_WIRE_STORAGE},
    [SHOAL_ERR_TRIMMED] = {"SHOAL_ERR_TRIMMED", "range was trimmed by retention",
                           SHOAL_WIRE_UNAVAILABLE},
    [SHOAL_ERR_NOT_FOUND] = {"SHOAL_ERR_NOT_FOUND", "not found", SHOAL_WIRE_UNAVAILABLE},
    [SHOAL_ERR_FAILED] = {"SHOAL_ERR_FAILED", "log failed after an I/O error; reopen it",
                          SHOAL_WIRE_STORAGE},
    [SHOAL_ERR_LOCKED] = {"SHOAL_ERR_LOCKED", "data directory is locked by another process",
                          SHOAL_WIRE_STORAGE},
    [SHOAL_ERR_MISMATCH] = {"SHOAL_ERR_MISMATCH", "file belongs to another log or format version",
                            SHOAL_WIRE_STORAGE},
    [SHOAL_ERR_CLOSED] = {"SHOAL_ERR_CLOSED", "the node is stopping", SHOAL_WIRE_BUSY},
};

static const s_error_info_t *
s_info (int code)
{
    if (code < 0 || code >= SHOAL_ERR_COUNT || s_errors[code].name == NULL)
        return NULL;
    return &s_errors[code];
}

const char *
shoal_strerror (int code)
{
    const s_error_info_t *info = s_info (code);
    return info ? info->message : "unknown error";
}

const char *
shoal_error_name (int code)
{
    const s_error_info_t *info = s_info (code);
    return info ? info->name : "SHOAL_ERR_UNKNOWN";
}

uint32_t
shoal_error_wire_code (int code)
{
    const s_error_info_t *info = s_info (code);
    return info ? info->wire_code : SHOAL_WIRE_STORAGE;
}
