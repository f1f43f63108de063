module ctrio/bench/udp_go_echo

go 1.19
