#!version:1.0.0.1
include:config "001565a1b2c3.cfg"
overwrite_mode = 0
