// Internal: the exec driver's factory (makeDriver() is the public way in).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ferry/switchover/driver.h"

namespace ferry::switchover {

Result<std::unique_ptr<Driver>> makeExecDriver(std::vector<std::string> command, Millis timeout);

}  // namespace ferry::switchover
