#ifndef C_REPLOG_READ_NOWAIT_H
#define C_REPLOG_READ_NOWAIT_H

#include <sys/types.h>

/// Reads `count` bytes at `offset` only if the kernel has them in memory (Linux: preadv2
/// with RWF_NOWAIT): never waits for the disk. Returns the bytes read, or -1 with errno
/// EAGAIN when the read would wait (and where the flag is not supported: the caller then
/// reads on a thread that may wait).
ssize_t replog_pread_nowait(int descriptor, void *buffer, size_t count, off_t offset);

#endif
