/*  =========================================================================
    shoal_error - the error codes of libshoal

    Functions that can fail return -1 (or NULL) and, where the caller needs
    to know why, give one of these codes through an `int *error` argument or
    the object's last error. Each way a thing can fail has its own code, so
    a caller (and a test) can tell them apart. shoal_error_wire_code maps a
    code to the Error.code of the wire contract (DESIGN.md).
    ========================================================================= */

#ifndef SHOAL_ERROR_H_INCLUDED
#define SHOAL_ERROR_H_INCLUDED

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SHOAL_OK = 0,
    //  Decoding and validation
    SHOAL_ERR_EMPTY,      //  no bytes at all where a message was expected
    SHOAL_ERR_MALFORMED,  //  bytes are not a valid protobuf message (truncated, garbage)
    SHOAL_ERR_TOO_LARGE,  //  message over the configured maximum size
    SHOAL_ERR_BAD_STREAM, //  stream name missing or not [a-z0-9][a-z0-9._-]{0,63}
    SHOAL_ERR_BAD_TYPE,   //  event type missing or not [A-Za-z0-9_][A-Za-z0-9._:-]{0,127}
    SHOAL_ERR_BAD_ORIGIN, //  origin present but not 16 bytes
    SHOAL_ERR_BAD_ID,     //  id present but not 16 bytes
    SHOAL_ERR_BAD_UTF8,   //  a string field is not valid UTF-8 (or holds a NUL)
    SHOAL_ERR_INVALID,    //  an argument the function cannot accept
    //  Storage
    SHOAL_ERR_IO,        //  the operating system reported an I/O error
    SHOAL_ERR_NOSPC,     //  no space left on the device
    SHOAL_ERR_CORRUPT,   //  stored bytes fail their checksum or framing
    SHOAL_ERR_TRIMMED,   //  the range was removed by retention
    SHOAL_ERR_NOT_FOUND, //  no such seq, log, consumer or file
    SHOAL_ERR_FAILED,    //  the log refuses appends after an I/O error until reopened
    SHOAL_ERR_LOCKED,    //  the data directory is in use by another process
    SHOAL_ERR_MISMATCH,  //  a file belongs to another origin, stream or format version
    SHOAL_ERR_CLOSED,    //  the node is being destroyed
    SHOAL_ERR_COUNT      //  number of codes; not an error
} shoal_error_t;

//  Wire error codes (Error.code in proto/shoal.proto).
#define SHOAL_WIRE_BAD_REQUEST 1
#define SHOAL_WIRE_UNKNOWN 2
#define SHOAL_WIRE_UNAVAILABLE 3
#define SHOAL_WIRE_TOO_LARGE 4
#define SHOAL_WIRE_NOT_ALLOWED 5
#define SHOAL_WIRE_STORAGE 6
#define SHOAL_WIRE_BUSY 7

//  A short English sentence for the code; never NULL.
const char *shoal_strerror (int code);

//  The symbolic name of the code ("SHOAL_ERR_TOO_LARGE"); never NULL.
const char *shoal_error_name (int code);

//  The wire error code that reports this error to a remote peer.
uint32_t shoal_error_wire_code (int code);

#ifdef __cplusplus
}
#endif

#endif
