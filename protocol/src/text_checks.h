// Checks on received Cap'n Proto text fields, shared by the validators of the peer
// link's messages (validate.cc) and the switch-over control messages (switch_messages.cc).
#pragma once

#include <string>
#include <string_view>

#include <capnp/blob.h>

#include "ferry/base/error.h"

namespace ferry::protocol::detail {

// Present when required, at most maxBytes, no NUL byte.
inline Status checkText(capnp::Text::Reader text, const char* field, size_t maxBytes, bool required) {
  std::string_view view(text.cStr(), text.size());
  if (required && view.empty()) return makeError(std::string(field) + " is empty");
  if (view.size() > maxBytes)
    return makeError(std::string(field) + " is longer than " + std::to_string(maxBytes) + " bytes");
  if (view.find('\0') != std::string_view::npos)
    return makeError(std::string(field) + " contains a NUL byte");
  return okStatus();
}

}  // namespace ferry::protocol::detail
