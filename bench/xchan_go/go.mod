module ctrio/bench/xchan_go

go 1.19
