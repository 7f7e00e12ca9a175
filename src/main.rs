fn main() {
    std::process::exit(kdthin::driver::main());
}
