// Errors that say what failed, where, and what to do about it.
//
// ferry uses exceptions only for "can't happen" bugs; anything a caller is
// expected to handle (bad input, an absent tool, a refused peer) comes back as
// a Result<T>.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace ferry {

struct Error {
  std::string what;  // what failed, with the place (file, host, peer, step)
  std::string hint;  // what the user can do about it; may be empty

  // One line for a terminal: "what (hint)".
  [[nodiscard]] std::string message() const { return hint.empty() ? what : what + " — " + hint; }
};

inline Error makeError(std::string what, std::string hint = {}) {
  return Error{std::move(what), std::move(hint)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  [[nodiscard]] bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  [[nodiscard]] const Error& error() const {
    assert(!ok());
    return std::get<1>(v_);
  }

 private:
  std::variant<T, Error> v_;
};

// Result<void> equivalent.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)) {}  // NOLINT(google-explicit-constructor)
  [[nodiscard]] bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  [[nodiscard]] const Error& error() const {
    assert(!ok());
    return *error_;
  }

 private:
  std::optional<Error> error_;
};

inline Status okStatus() {
  return {};
}

}  // namespace ferry

// Propagate an error from an expression returning Status or Result<T>.
#define FERRY_TRY(expr)                                  \
  do {                                                   \
    auto ferry_try_r_ = (expr);                          \
    if (!ferry_try_r_.ok()) return ferry_try_r_.error(); \
  } while (false)
