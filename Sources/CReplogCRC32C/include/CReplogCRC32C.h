#ifndef C_REPLOG_CRC32C_H
#define C_REPLOG_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/// Whether this processor computes CRC-32C in hardware (x86-64 with SSE 4.2, or 64-bit ARM
/// with the CRC32 extension): then `replog_crc32c` may be called.
int replog_crc32c_in_hardware(void);

/// CRC-32C (Castagnoli) of `count` bytes, with the processor's CRC32 instruction; the same
/// value as replog's table-driven CRC32C in Swift. Call only if `replog_crc32c_in_hardware()`.
uint32_t replog_crc32c(const void *bytes, size_t count);

#endif
