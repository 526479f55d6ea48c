//! Configuration: embedded defaults < config file < environment < command line.
