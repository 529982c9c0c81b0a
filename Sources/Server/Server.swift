// Server module
public enum Server {
    public static func main() {}
}
