/*
 * The message half of fail(), shared by the payload (builder/core/main.c) and the resume
 * loader (builder/resume/main.c), whose stream.c and drivers report errors through fail().
 */
#ifndef SOS_FAILURE_H
#define SOS_FAILURE_H
#include <stdarg.h>
#include "payload.h"
#include "printf.h"
#include "string.h"

/* Formats the message into msg (sizeof handoff.message bytes, NUL-terminated and
 * NUL-padded: the host reads the whole field) and records status and message in the
 * handoff block, unless `keep_first` and an earlier failure is already there (the first
 * failure is the cause; what follows is its consequence). 1 if recorded. */
static inline int record_failure(struct sos_handoff *h, uint32_t status, int keep_first,
                                 char *msg, const char *fmt, va_list ap)
{
    memset(msg, 0, sizeof h->message);
    kvsnprintf(msg, sizeof h->message, fmt, ap);
    if (keep_first && h->status != SOS_STATUS_NOT_RUN && h->status != SOS_STATUS_WRITTEN)
        return 0;
    h->status = status;
    memcpy(h->message, msg, sizeof h->message);
    return 1;
}

#endif
