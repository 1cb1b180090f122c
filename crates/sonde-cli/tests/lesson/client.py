# The lesson's TCP client, as written in the lesson. The only change: the
# port may be given as the first argument (default 10000), so tests need no
# fixed port.
import socket
import sys

port = int(sys.argv[1]) if len(sys.argv) > 1 else 10000

client_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
client_socket.connect(('localhost', port))
client_socket.send("Hello, World!".encode())
data = client_socket.recv(1024)
print(data.decode())
client_socket.close()
