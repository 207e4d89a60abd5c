// ThreadSanitizer and ZeroMQ: libzmq and libsodium are not instrumented, so TSan
// cannot see the happens-before edge of libzmq's lock-free pipes. A frame that
// libzmq's I/O thread decrypted (libsodium) and handed to the link thread then
// looks like a race on every read of its bytes. These suppressions silence
// reports with a libzmq/libsodium frame in either stack; races between ferry's
// own threads are still reported. Compiled in only under -fsanitize=thread.
#if defined(__SANITIZE_THREAD__)
#define FERRY_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FERRY_TSAN 1
#endif
#endif

#ifdef FERRY_TSAN
extern "C" const char* __tsan_default_suppressions();
extern "C" const char* __tsan_default_suppressions() {
  return "called_from_lib:libzmq.so.5\n"
         "race:libzmq.so.5\n"
         "called_from_lib:libsodium.so.23\n"
         "race:libsodium.so.23\n";
}
#endif
