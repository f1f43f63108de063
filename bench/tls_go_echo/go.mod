module ctrio/bench/tls_go_echo

go 1.19
