#ifdef __linux__
#define _GNU_SOURCE
#endif
#include "CReplogReadNowait.h"

#include <errno.h>
#include <sys/uio.h>

ssize_t replog_pread_nowait(int descriptor, void *buffer, size_t count, off_t offset) {
#if defined(__linux__) && defined(RWF_NOWAIT)
    struct iovec vector = { .iov_base = buffer, .iov_len = count };
    ssize_t result = preadv2(descriptor, &vector, 1, offset, RWF_NOWAIT);
    if (result < 0 && (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL)) errno = EAGAIN;
    return result;
#else
    (void)descriptor; (void)buffer; (void)count; (void)offset;
    errno = EAGAIN;
    return -1;
#endif
}
