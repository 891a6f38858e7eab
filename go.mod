module stdlb

go 1.26
