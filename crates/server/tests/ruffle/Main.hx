// The SWF of the real-Ruffle test (crates/server/tests/ruffle.rs): opens a
// flash.net.Socket to the host and port given in its flashvars, sends one
// line, reads the echo back and reports every socket event to the page
// through ExternalInterface.call("flashpolicyReport", kind, detail).
//
// Built at test time: haxe -swf out.swf -swf-version 10 -main Main

import flash.events.Event;
import flash.events.IOErrorEvent;
import flash.events.ProgressEvent;
import flash.events.SecurityErrorEvent;
import flash.external.ExternalInterface;
import flash.net.Socket;

class Main {
	static var socket:Socket;
	static var received:String = "";

	static function report(kind:String, detail:String) {
		ExternalInterface.call("flashpolicyReport", kind, detail);
	}

	static function param(name:String):String {
		var value:Dynamic = Reflect.field(flash.Lib.current.loaderInfo.parameters, name);
		return value == null ? "" : Std.string(value);
	}

	static function main() {
		var host = param("host");
		var port = Std.parseInt(param("port"));
		var line = param("line");
		if (port == null) {
			report("error", "no port in the flashvars");
			return;
		}
		socket = new Socket();
		socket.addEventListener(Event.CONNECT, function(_) {
			report("connect", host + ":" + port);
			socket.writeUTFBytes(line + "\n");
			socket.flush();
		});
		socket.addEventListener(ProgressEvent.SOCKET_DATA, function(_) {
			received += socket.readUTFBytes(socket.bytesAvailable);
			var end = received.indexOf("\n");
			if (end >= 0) {
				report("echo", received.substr(0, end));
				socket.close();
				report("closed", "by the SWF");
			}
		});
		socket.addEventListener(Event.CLOSE, function(_) {
			report("close", received);
		});
		socket.addEventListener(IOErrorEvent.IO_ERROR, function(e:IOErrorEvent) {
			report("ioerror", e.text);
		});
		socket.addEventListener(SecurityErrorEvent.SECURITY_ERROR, function(e:SecurityErrorEvent) {
			report("securityerror", e.text);
		});
		report("start", host + ":" + port);
		socket.connect(host, port);
	}
}
