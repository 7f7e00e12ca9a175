fn main() {
    std::process::exit(kdthin::link::main());
}
