import Foundation
import Server

exit(Commands.main(arguments: CommandLine.arguments, environment: ProcessInfo.processInfo.environment))
